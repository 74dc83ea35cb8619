//! `keel config check FILE` and `keel config show`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use keel::DatabaseConfig;

use crate::fail::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a config file plus the DATABASE_* environment.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the effective config (defaults, file, environment), the
    /// password redacted.
    Show {
        /// The TOML file, if any.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub(crate) fn run(command: ConfigCommand) -> Result<ExitCode, Failure> {
    match command {
        ConfigCommand::Check { file } => {
            let config = load(Some(&file))?;
            say(&format!(
                "{}: ok (database `{}`)",
                file.display(),
                config.name
            ));
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Show { config } => {
            let config = DatabaseConfig::from_file_or_default(config.as_deref())
                .and_then(DatabaseConfig::with_env)
                .map_err(|e| Failure::input(e).hint(HINT))?;
            let text = toml::to_string_pretty(&config)
                .map_err(|e| Failure::input(format!("cannot show the config: {e}")))?;
            say(&text);
            Ok(ExitCode::SUCCESS)
        }
    }
}

const HINT: &str = "fix the field named above; `keel config show` prints the effective config";

pub(crate) fn load(file: Option<&std::path::Path>) -> Result<DatabaseConfig, Failure> {
    DatabaseConfig::load(file).map_err(|e| Failure::input(e).hint(HINT))
}

#[expect(clippy::print_stdout, reason = "the command's output")]
fn say(text: &str) {
    println!("{text}");
}

/// Defaults when no file is given.
trait FileOrDefault: Sized {
    fn from_file_or_default(file: Option<&std::path::Path>) -> Result<Self, keel::ConfigError>;
}

impl FileOrDefault for DatabaseConfig {
    fn from_file_or_default(file: Option<&std::path::Path>) -> Result<Self, keel::ConfigError> {
        file.map_or_else(|| Ok(Self::default()), Self::from_file)
    }
}

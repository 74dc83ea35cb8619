//! A throwaway PostgreSQL server starts, serves, stops and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::TcpStream;

use keel_fault::ThrowawayPostgres;

#[test]
fn it_starts_stops_and_starts_again_on_its_port() {
    let pg = ThrowawayPostgres::start().unwrap();
    assert!(
        pg.url("postgres")
            .ends_with(&format!(":{}/postgres", pg.port()))
    );
    assert!(
        TcpStream::connect(("127.0.0.1", pg.port())).is_ok(),
        "it listens"
    );
    pg.stop().unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", pg.port())).is_err(),
        "stopped"
    );
    pg.start_again().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", pg.port())).is_ok(), "back");
    pg.crash().unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", pg.port())).is_err(),
        "crashed"
    );
}

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

#[test]
fn a_replica_streams_the_primarys_writes_and_takes_writes_once_promoted() {
    let primary = ThrowawayPostgres::start().unwrap();
    primary
        .psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .unwrap();
    let replica = primary.start_replica().unwrap();
    assert_ne!(replica.port(), primary.port());
    assert_eq!(replica.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(primary.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
    let err = replica.psql("INSERT INTO t VALUES (2)").unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    // A write on the primary reaches the replica.
    primary.psql("INSERT INTO t VALUES (2)").unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = replica.psql("SELECT count(*) FROM t").unwrap();
        if seen == "2" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(seen, "2", "the replica replays the primary's WAL");
    primary.stop().unwrap();
    replica.promote().unwrap();
    assert_eq!(replica.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
    replica.psql("INSERT INTO t VALUES (3)").unwrap();
}

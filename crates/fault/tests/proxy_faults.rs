//! Each fault of the proxy, against an echo server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keel_fault::{Fault, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    address
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).await?;
    Ok(back)
}

/// Whether the peer has closed: a read returns end of stream or an error.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0_u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn traffic_passes_and_attempts_are_counted() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut client, b"ping").await.unwrap(), b"ping");
    assert_eq!(proxy.attempts(), 1);
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn refuse_closes_new_connections_and_leaves_open_ones() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut open, b"a").await.unwrap(), b"a");
    proxy.set(Fault::Refuse);
    let mut refused = TcpStream::connect(proxy.address()).await.unwrap();
    assert!(closed(&mut refused).await);
    assert_eq!(round_trip(&mut open, b"b").await.unwrap(), b"b");
    proxy.set(Fault::None);
    let mut again = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut again, b"c").await.unwrap(), b"c");
    assert_eq!(proxy.attempts(), 3);
}

#[tokio::test]
async fn drop_connections_breaks_every_open_one() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut one = TcpStream::connect(proxy.address()).await.unwrap();
    let mut two = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut one, b"x").await.unwrap();
    round_trip(&mut two, b"y").await.unwrap();
    proxy.drop_connections();
    assert!(closed(&mut one).await);
    assert!(closed(&mut two).await);
    let mut fresh = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut fresh, b"z").await.unwrap(), b"z");
}

#[tokio::test]
async fn latency_holds_each_chunk() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set(Fault::Latency(Duration::from_millis(100)));
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    let started = Instant::now();
    round_trip(&mut client, b"slow").await.unwrap();
    // Held on the way there and on the way back: never sooner.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_black_hole_answers_nothing_until_it_lifts() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    round_trip(&mut client, b"1").await.unwrap();
    proxy.set(Fault::Blackhole);
    client.write_all(b"2").await.unwrap();
    let mut byte = [0_u8; 1];
    let silent = tokio::time::timeout(Duration::from_millis(300), client.read(&mut byte)).await;
    assert!(
        silent.is_err(),
        "no answer, and no error either: {silent:?}"
    );
    proxy.set(Fault::None);
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut byte))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&byte, b"2", "held, not lost");
}

#[tokio::test]
async fn cut_after_n_bytes() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set(Fault::CutAfter(5));
    let mut client = TcpStream::connect(proxy.address()).await.unwrap();
    client.write_all(b"0123456789").await.unwrap();
    let mut back = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut back)).await;
    assert!(ended.is_ok(), "the connection was closed");
    // Only the first five bytes reached the server; whatever echo made it
    // back before the cut is a prefix of them.
    assert!(back.len() <= 5 && b"01234".starts_with(&back), "{back:?}");
}

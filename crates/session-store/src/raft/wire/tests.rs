//! Two ends of the wire on 127.0.0.1: good peers talk; a wrong secret, a
//! stranger, an oversized, truncated or altered frame are refused, and the
//! listener goes on serving.

use tokio::net::TcpListener;

use super::*;

fn config(id: u64, secret: &str) -> WireConfig {
    WireConfig::new(id, Secret::new(secret.as_bytes().to_vec()).unwrap())
}

const SECRET: &str = "correct horse battery staple";

/// A listener, and a connect from `client` to it accepted as `server`.
async fn pair(
    server: &WireConfig,
    client: &WireConfig,
) -> (
    TcpListener,
    Result<PeerStream, WireError>,
    Result<PeerStream, WireError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = async {
        let (stream, _) = listener.accept().await.unwrap();
        PeerStream::accept(stream, server).await
    };
    let (accepted, connected) = tokio::join!(accepting, PeerStream::connect(addr, client));
    (listener, accepted, connected)
}

#[tokio::test]
async fn peers_with_the_secret_learn_each_others_ids_and_exchange_frames() {
    let (_l, server, client) = pair(&config(1, SECRET), &config(2, SECRET)).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    assert_eq!((server.peer_id(), client.peer_id()), (2, 1));
    let big = vec![7_u8; 1 << 20];
    for payload in [&b""[..], b"append entries", &big] {
        client.send(payload).await.unwrap();
        assert_eq!(server.recv().await.unwrap().unwrap(), payload);
        server.send(payload).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), payload);
    }
    drop(client);
    assert!(server.recv().await.unwrap().is_none(), "a clean close");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_on_both_sides() {
    let (_l, server, client) = pair(&config(1, SECRET), &config(2, "another secret, long")).await;
    assert!(matches!(client, Err(WireError::WrongSecret)), "{client:?}");
    assert!(matches!(server, Err(WireError::WrongSecret)), "{server:?}");
}

#[tokio::test]
async fn a_stranger_is_refused_and_the_listener_serves_the_next_peer() {
    let server = config(1, SECRET);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut stranger = TcpStream::connect(addr).await.unwrap();
    stranger
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n........................")
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let refused = PeerStream::accept(stream, &server).await;
    assert!(
        matches!(refused, Err(WireError::NotAPeer(_))),
        "{refused:?}"
    );
    // A client that says nothing is cut off by the handshake timeout.
    let mut quick = config(1, SECRET);
    quick.handshake_timeout = Duration::from_millis(100);
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let timed_out = PeerStream::accept(stream, &quick).await;
    assert!(matches!(timed_out, Err(WireError::HandshakeTimeout(_))));
    // The next real peer is served.
    let third = config(3, SECRET);
    let accepting = async {
        let (stream, _) = listener.accept().await.unwrap();
        PeerStream::accept(stream, &server).await
    };
    let (accepted, connected) = tokio::join!(accepting, PeerStream::connect(addr, &third));
    assert_eq!(accepted.unwrap().peer_id(), 3);
    assert_eq!(connected.unwrap().peer_id(), 1);
}

#[tokio::test]
async fn an_oversized_frame_is_refused_before_it_is_read() {
    let mut small = config(1, SECRET);
    small.max_frame = 1024;
    let (_l, server, client) = pair(&small, &config(2, SECRET)).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    client.send(&[0; 2048]).await.unwrap();
    let err = server.recv().await.unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooLarge {
                len: 2048,
                max: 1024
            }
        ),
        "{err}"
    );
    // Nor will this side send what its own limit refuses.
    assert!(matches!(
        server.send(&[0; 2048]).await,
        Err(WireError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_burst_of_frames_leaves_in_order_past_one_writev() {
    let (_l, server, client) = pair(&config(1, SECRET), &config(2, SECRET)).await;
    let (mut server, client) = (server.unwrap(), client.unwrap());
    let (_reader, mut writer) = client.into_split();
    // 1,500 frames: small ones (some empty) gathered into one buffer, and
    // between them 750 large ones sent from their own (1,500 buffers:
    // several `writev`s), some larger than a socket buffer takes at once
    // (partial writes).
    let frame = |i: usize| {
        let len = match i {
            _ if i % 500 == 7 => 300_000,
            _ if i % 2 == 1 => 17_000 + i,
            _ => (i * 37) % 3000,
        };
        vec![u8::try_from(i % 251).unwrap(); len]
    };
    let sending = tokio::spawn(async move {
        for i in 0..1500 {
            writer.queue(frame(i)).unwrap();
        }
        writer.flush().await.unwrap();
        writer
    });
    for i in 0..1500 {
        assert_eq!(server.recv().await.unwrap().unwrap(), frame(i), "frame {i}");
    }
    // The writer goes on after the burst.
    let mut writer = sending.await.unwrap();
    writer.send(b"after").await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), b"after");
}

#[tokio::test]
async fn a_truncated_frame_is_an_error_not_a_hang() {
    let (_l, server, client) = pair(&config(1, SECRET), &config(2, SECRET)).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    // A header announcing 100 bytes, 10 of them, then the end.
    client
        .writer
        .writer
        .write_all(&100_u32.to_be_bytes())
        .await
        .unwrap();
    client.writer.writer.write_all(&[0; 10]).await.unwrap();
    client.writer.writer.shutdown().await.unwrap();
    assert!(matches!(server.recv().await, Err(WireError::Truncated)));
}

#[tokio::test]
async fn an_altered_or_replayed_frame_fails_its_check() {
    let (_l, server, client) = pair(&config(1, SECRET), &config(2, SECRET)).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    // A frame with one payload byte flipped after it was tagged.
    let tagged = client.writer.mac.tag(client.writer.sent, b"vote for 2");
    client.writer.sent += 1;
    let mut frame = 10_u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"vote for 3");
    frame.extend_from_slice(&tagged);
    client.writer.writer.write_all(&frame).await.unwrap();
    assert!(matches!(server.recv().await, Err(WireError::BadTag)));

    // A frame sent again verbatim: its number is past.
    let (_l, server, client) = pair(&config(1, SECRET), &config(2, SECRET)).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    let tagged = client.writer.mac.tag(0, b"append");
    let mut frame = 6_u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"append");
    frame.extend_from_slice(&tagged);
    client.writer.writer.write_all(&frame).await.unwrap();
    client.writer.writer.write_all(&frame).await.unwrap();
    assert_eq!(server.recv().await.unwrap().unwrap(), b"append");
    assert!(matches!(server.recv().await, Err(WireError::BadTag)));
}

#[test]
fn secrets_are_never_shown_and_short_ones_are_refused() {
    let secret = Secret::new(SECRET.as_bytes().to_vec()).unwrap();
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    let shown = format!("{:?}", WireConfig::new(1, secret));
    assert!(!shown.contains("horse"), "{shown}");
    let err = Secret::new(b"short".to_vec()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the secret has 5 bytes; at least 16 are needed"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("  {SECRET}\n")).unwrap();
    assert!(Secret::from_file(&path).is_ok());
    std::fs::write(&path, "tiny\n").unwrap();
    let err = Secret::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("has 4 bytes") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let missing = Secret::from_file(&dir.path().join("none")).unwrap_err();
    assert!(missing.to_string().starts_with("secret file "), "{missing}");
}

//! End to end: a server bound to 127.0.0.1:0 and plain HTTP/1.1 over a TCP socket (no client
//! library: the request bytes are written by hand).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::full;

async fn http(addr: std::net::SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_socket_serves_health_and_queries() {
    let f = full().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(niji_server::serve(listener, f.state.clone()));

    let r = http(addr, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\nok"), "{r}");

    let body = r#"{"project": "study", "sql": "SELECT count(*) AS n FROM person", "mode": "sdc"}"#;
    let req = format!(
        "POST /v1/queries HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        f.researcher,
        body.len()
    );
    let r = http(addr, req).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let (_, json) = r.split_once("\r\n\r\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["rows"], serde_json::json!([[120]]));

    let r = http(addr, "GET /v1/datasets HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into()).await;
    assert!(r.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{r}");
    server.abort();
}

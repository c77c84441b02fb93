//! Loopback helpers shared by the tests and the benchmark: a free port for
//! a server to be started on, a minimal HTTP/1.1 GET for the admin and
//! emulator routes, and the series of the admin listener's `/metrics`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from 127.0.0.1:`port`; returns the status code and the body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let reply = http_get_with(port, path, &[]).await;
    (reply.status, reply.body)
}

/// An HTTP reply: its status, its header lines, its body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The value of the header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// GETs `path` from 127.0.0.1:`port` with the request headers `headers`.
pub async fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("reads");
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A port nothing listens on right now, for a server started by address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The series of a Prometheus text exposition whose lines start with
/// `prefix` (a name, or a name and the start of its labels): for each, the
/// rest of the series' name (its labels) and its value.
pub fn series<'a>(metrics: &'a str, prefix: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    metrics.lines().filter_map(move |line| {
        let (labels, value) = line.strip_prefix(prefix)?.rsplit_once(' ')?;
        Some((labels, value.parse().ok()?))
    })
}

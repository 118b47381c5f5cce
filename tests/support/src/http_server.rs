//! A tiny HTTP/1.1 server on loopback that records what it receives, for testing what plugins
//! send (and what the operator adds to their requests). Hand-written with std so tests need no
//! web framework; it answers every request with 200 and a fixed body, and can be told to hold
//! its answers (to catch a caller in the middle of a request).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{Arc, Condvar, Mutex},
};

/// What one request looked like on the wire.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct RecordingServer {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    /// While true, a received request is recorded but not answered.
    holding: Arc<(Mutex<bool>, Condvar)>,
}

pub const RESPONSE_BODY: &str = "hello from the test server";

/// A chunked body (RFC 9112 §7.1), trailers skipped.
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_field = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_field, 16).map_err(std::io::Error::other)?;
        if size == 0 {
            let mut trailer = String::new();
            while reader.read_line(&mut trailer)? > 0 && !trailer.trim().is_empty() {
                trailer.clear();
            }
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        reader.read_line(&mut String::new())?;
    }
}

impl RecordingServer {
    /// Starts serving on a free loopback port, for the rest of the test process.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let address = listener.local_addr().expect("a local address");
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let recorded = requests.clone();
        let holding: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let hold = holding.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) =
                    (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
                let mut headers = Vec::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.trim_end().split_once(':') {
                        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                    }
                }
                let header = |wanted: &str| headers.iter().find(|(name, _)| name == wanted).map(|(_, v)| v.as_str());
                let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                    read_chunked(&mut reader)
                } else {
                    let mut body = vec![0; header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
                    reader.read_exact(&mut body).map(|()| body)
                };
                let Ok(body) = body else { continue };
                recorded.lock().unwrap().push(RecordedRequest { method, path, headers, body });
                let (held, released) = &*hold;
                drop(released.wait_while(held.lock().unwrap(), |held| *held).unwrap());
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{RESPONSE_BODY}",
                    RESPONSE_BODY.len()
                );
            }
        });
        Self { address, requests, holding }
    }

    /// From now on, requests are recorded but their answers wait for [`Self::release`].
    pub fn hold(&self) {
        *self.holding.0.lock().unwrap() = true;
    }

    /// Answers the held request and those after it.
    pub fn release(&self) {
        *self.holding.0.lock().unwrap() = false;
        self.holding.1.notify_all();
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

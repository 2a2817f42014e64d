//! berth's Prometheus endpoint, as a test reads it.

use std::io::{Read, Write};
use std::time::Duration;

/// A loopback address no one listens on now, for `metrics.address`.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The whole HTTP answer to `GET /metrics` at `address`, status line included.
pub fn scrape(address: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// The value of the series written exactly as `series` (name and labels), if scraped.
pub fn value(scraped: &str, series: &str) -> Option<f64> {
    scraped.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

//! The HTTP requests of the emulator's targets, from bytes: a
//! `METHOD TARGET` line, `name: value` lines, a blank line, the body.
//! Header lines that are no header are skipped.

/// The request's head and body; `None` when the first line is no request.
pub fn parse(data: &[u8]) -> Option<(http::request::Parts, Vec<u8>)> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], data[at + 2..].to_vec()),
        None => (data, Vec::new()),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let mut words = first.splitn(2, |&b| b == b' ');
    let method = http::Method::from_bytes(words.next()?).ok()?;
    let uri = http::Uri::try_from(words.next().unwrap_or(b"/")).ok()?;
    let mut request = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = http::HeaderName::from_bytes(&line[..colon]);
        let value = http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            request = request.header(name, value);
        }
    }
    let (parts, ()) = request.body(()).ok()?.into_parts();
    Some((parts, body))
}

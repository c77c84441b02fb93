//! The lines the writer holds until the sink has taken them: whole lines,
//! kept in a buffer of its own (a `BufWriter` loses what it holds when a
//! write fails), and how far the sink got, so that a write that stopped
//! part way through resumes at the very byte it stopped at: no line is
//! torn or written twice.

use std::io::{self, Write};

/// What marks a line on the fallback stream (standard error), before the
/// line itself.
pub(super) const FALLBACK_MARK: &[u8] = b"audit-fallback: ";

/// Whole lines not yet written, each ending in a newline.
#[derive(Default)]
pub(super) struct Held {
    bytes: Vec<u8>,
    /// How many bytes of `bytes` the sink has taken.
    written: usize,
    /// How many lines `bytes` holds, and how many of them the sink has
    /// completed: a write that takes all that is left completes the rest
    /// without the bytes being counted through.
    lines: u64,
    lines_written: u64,
    /// The sink holds the start of a line whose whole went to the
    /// fallback: what it is written next starts on a line of its own.
    torn: bool,
}

impl Held {
    /// Nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Adds the line `encode` writes (without its newline).
    pub(super) fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.bytes);
        self.bytes.push(b'\n');
        self.lines += 1;
    }

    /// Writes what is held to `sink`, from where the last write stopped.
    /// Returns the lines the sink completed, and whether it took them all;
    /// once it has, nothing is held.
    pub(super) fn write_to(&mut self, sink: &mut dyn Write) -> (u64, io::Result<()>) {
        if self.torn {
            // One byte: written whole or not at all.
            if let Err(e) = sink.write_all(b"\n") {
                return (0, Err(e));
            }
            self.torn = false;
        }
        let before = self.lines_written;
        while let Some(rest) = self.bytes.get(self.written..).filter(|r| !r.is_empty()) {
            let done = self.lines_written - before;
            match sink.write(rest) {
                Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
                // All that was left: the lines are all complete.
                Ok(n) if n >= rest.len() => {
                    self.written = self.bytes.len();
                    self.lines_written = self.lines;
                }
                Ok(n) => {
                    let taken = rest.get(..n).unwrap_or(rest);
                    self.lines_written += newlines(taken) as u64;
                    self.written += taken.len();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (done, Err(e)),
            }
        }
        let done = self.lines_written - before;
        self.clear();
        (done, Ok(()))
    }

    /// Writes every line the sink has not completed to `fallback`, each
    /// after [`FALLBACK_MARK`] (a line whose start the sink took goes whole),
    /// in one write, so that no other line of the stream comes between;
    /// nothing is held afterwards. Returns the lines, and whether
    /// `fallback` took them.
    pub(super) fn fall_back(&mut self, fallback: &mut dyn Write) -> (u64, io::Result<()>) {
        let done = self.bytes.get(..self.written).unwrap_or_default();
        let line_start = done.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if line_start < self.written {
            self.torn = true;
        }
        let rest = self.bytes.get(line_start..).unwrap_or_default();
        let lines = newlines(rest);
        let mut marked = Vec::with_capacity(rest.len() + FALLBACK_MARK.len() * lines);
        for line in rest.split_inclusive(|&b| b == b'\n') {
            marked.extend_from_slice(FALLBACK_MARK);
            marked.extend_from_slice(line);
        }
        let written = fallback.write_all(&marked).and_then(|()| fallback.flush());
        self.clear();
        (lines as u64, written)
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.written = 0;
        self.lines = 0;
        self.lines_written = 0;
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A sink that, write after write, takes at most the bytes its script
    /// says, or fails (`None`); past its script it takes everything.
    #[derive(Default)]
    struct Scripted {
        took: Vec<u8>,
        script: VecDeque<Option<usize>>,
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.script.pop_front() {
                Some(None) => Err(io::ErrorKind::BrokenPipe.into()),
                Some(Some(n)) => {
                    let n = n.min(buf.len());
                    self.took.extend_from_slice(&buf[..n]);
                    Ok(n)
                }
                None => {
                    self.took.extend_from_slice(buf);
                    Ok(buf.len())
                }
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn add(held: &mut Held, line: &str) {
        held.push(|buf| buf.extend_from_slice(line.as_bytes()));
    }

    fn held(lines: &[&str]) -> Held {
        let mut held = Held::default();
        for line in lines {
            add(&mut held, line);
        }
        held
    }

    #[test]
    fn a_write_that_stops_part_way_resumes_at_the_byte_it_stopped_at() {
        let mut held = held(&["{\"a\":1}", "{\"b\":22}", "{\"c\":333}"]);
        // Five bytes, a failure, then part of the second line, a failure,
        // then the rest.
        let mut sink = Scripted {
            script: [Some(5), None, Some(6), None].into(),
            ..Scripted::default()
        };
        let (lines, outcome) = held.write_to(&mut sink);
        assert_eq!((lines, outcome.is_err()), (0, true));
        let (lines, outcome) = held.write_to(&mut sink);
        assert_eq!((lines, outcome.is_err()), (1, true));
        assert!(!held.is_empty());
        let (lines, outcome) = held.write_to(&mut sink);
        assert_eq!((lines, outcome.is_ok()), (2, true));
        assert!(held.is_empty());
        assert_eq!(sink.took, b"{\"a\":1}\n{\"b\":22}\n{\"c\":333}\n");
        // Lines added afterwards are written once, after them.
        add(&mut held, "{}");
        assert_eq!(held.write_to(&mut sink).0, 1);
        assert_eq!(sink.took, b"{\"a\":1}\n{\"b\":22}\n{\"c\":333}\n{}\n");
    }

    #[test]
    fn the_fallback_gets_every_line_not_completed_whole_and_marked() {
        let mut held = held(&["one", "two", "three"]);
        // The sink takes the first line and two bytes of the second.
        let mut sink = Scripted {
            script: [Some(6), None, None].into(),
            ..Scripted::default()
        };
        assert_eq!(held.write_to(&mut sink).0, 1);
        let mut stderr = Vec::new();
        let (lines, outcome) = held.fall_back(&mut stderr);
        assert_eq!((lines, outcome.is_ok()), (2, true));
        assert_eq!(
            String::from_utf8(stderr).unwrap(),
            "audit-fallback: two\naudit-fallback: three\n"
        );
        assert!(held.is_empty());
        // The sink recovers: the torn line is ended, the next line has one
        // of its own.
        add(&mut held, "four");
        let (lines, outcome) = held.write_to(&mut sink);
        assert!(outcome.is_err(), "the script's last failure");
        assert_eq!(lines, 0);
        assert_eq!(held.write_to(&mut sink).0, 1);
        assert_eq!(String::from_utf8(sink.took).unwrap(), "one\ntw\nfour\n");
    }
}

//! Incremental CSV splitting: bytes arrive in arbitrary pieces (a piece may
//! end inside a quoted field or inside a UTF-8 character); whole records come
//! out. Buffers are bounded, so memory stays flat however long the file is.

use csv_core::{ReadRecordResult, Reader};

/// Longest record accepted, in bytes. Longer ones are nearly always an
/// unclosed quote swallowing the rest of the file.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Most fields a record may have.
pub const MAX_FIELDS: usize = 1024;

/// Why splitting stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    RecordTooLong,
    TooManyFields,
}

/// One record's fields, borrowed from the splitter's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    data: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Fields<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the record has no fields (never produced by the splitter).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The raw bytes of each field, unquoted.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let data = self.data;
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let field = &data[start..end];
            start = end;
            field
        })
    }
}

/// Splits a byte stream into CSV records (RFC 4180 quoting, LF or CRLF, a
/// leading UTF-8 BOM dropped, empty lines skipped).
pub struct Splitter {
    core: Reader,
    /// Bytes held back until we know whether the file starts with a BOM.
    head: Vec<u8>,
    started: bool,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self {
            core: Reader::new(),
            head: Vec::new(),
            started: false,
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 32],
            ends_len: 0,
        }
    }
}

impl Splitter {
    /// Feeds the next bytes; calls `sink` for every record they complete.
    pub fn push<E: From<SplitError>>(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(Fields<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.started {
            return self.run(input, false, sink);
        }
        // csv_core drops a BOM only when it arrives whole in one piece.
        self.head.extend_from_slice(input);
        if self.head.len() < 3 {
            return Ok(());
        }
        self.started = true;
        let head = std::mem::take(&mut self.head);
        self.run(&head, false, sink)
    }

    /// Ends the input; calls `sink` for the last record, if unterminated.
    pub fn finish<E: From<SplitError>>(&mut self, sink: &mut impl FnMut(Fields<'_>) -> Result<(), E>) -> Result<(), E> {
        if !self.started {
            self.started = true;
            let head = std::mem::take(&mut self.head);
            self.run(&head, false, sink)?;
        }
        self.run(&[], true, sink)
    }

    fn run<E: From<SplitError>>(
        &mut self,
        mut input: &[u8],
        eof: bool,
        sink: &mut impl FnMut(Fields<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[self.out_len..], &mut self.ends[self.ends_len..]);
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                ReadRecordResult::InputEmpty if eof => {}
                ReadRecordResult::InputEmpty => return Ok(()),
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        return Err(SplitError::RecordTooLong.into());
                    }
                    self.out.resize((self.out.len() * 2).min(MAX_RECORD_BYTES), 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_FIELDS {
                        return Err(SplitError::TooManyFields.into());
                    }
                    self.ends.resize((self.ends.len() * 2).min(MAX_FIELDS), 0);
                }
                ReadRecordResult::Record => {
                    let fields = Fields {
                        data: &self.out[..self.out_len],
                        ends: &self.ends[..self.ends_len],
                    };
                    let result = sink(fields);
                    self.out_len = 0;
                    self.ends_len = 0;
                    result?;
                }
                ReadRecordResult::End => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_pieces(data: &[u8], piece: usize) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut sink = |f: Fields<'_>| -> Result<(), SplitError> {
            records.push(f.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect());
            Ok(())
        };
        let mut splitter = Splitter::default();
        for chunk in data.chunks(piece.max(1)) {
            splitter.push(chunk, &mut sink).unwrap();
        }
        splitter.finish(&mut sink).unwrap();
        records
    }

    #[test]
    fn same_records_whatever_the_pieces() {
        let file =
            "\u{feff}name,email\r\n\"Doe, Jane\",\"j\"\"d\"\"@x.com\"\n\n\"multi\nline\",é@x.com\nlast,row".as_bytes();
        let whole = split_in_pieces(file, file.len());
        assert_eq!(
            whole,
            vec![
                vec!["name", "email"],
                vec!["Doe, Jane", "j\"d\"@x.com"],
                vec!["multi\nline", "é@x.com"],
                vec!["last", "row"],
            ]
        );
        for piece in 1..file.len() {
            assert_eq!(split_in_pieces(file, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn bounds_records() {
        let mut splitter = Splitter::default();
        let mut sink = |_: Fields<'_>| -> Result<(), SplitError> { Ok(()) };
        let open_quote = [b"a,\"".as_slice(), &vec![b'x'; MAX_RECORD_BYTES]].concat();
        assert_eq!(splitter.push(&open_quote, &mut sink), Err(SplitError::RecordTooLong));

        let mut splitter = Splitter::default();
        let wide = ",".repeat(MAX_FIELDS + 1);
        assert_eq!(
            splitter.push(wide.as_bytes(), &mut sink),
            Err(SplitError::TooManyFields)
        );
    }
}

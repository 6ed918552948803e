//! HPACK encoding of the simplest kind (RFC 7541): integers and literal fields never added to
//! the peer's table, without Huffman coding. A block of them can be sent any number of times,
//! on any connection, and carries any bytes (the tests' malformed fields included).

/// An HPACK integer with an `n`-bit prefix, after the high bits in `first` (section 5.1).
pub fn integer(out: &mut Vec<u8>, n: u32, first: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal field without indexing (section 6.2.2): by the static table's name `index`, or
/// with `name` itself when `index` is 0.
pub fn literal(out: &mut Vec<u8>, index: usize, name: &[u8], value: &[u8]) {
    integer(out, 4, 0x00, index);
    if index == 0 {
        integer(out, 7, 0x00, name.len());
        out.extend_from_slice(name);
    }
    integer(out, 7, 0x00, value.len());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_take_the_rfc_examples_forms() {
        // RFC 7541 C.1.1-C.1.3: 10 and 1337 with a 5-bit prefix, 42 with an 8-bit one.
        let mut out = Vec::new();
        integer(&mut out, 5, 0, 10);
        assert_eq!(out, [0x0a]);
        out.clear();
        integer(&mut out, 5, 0, 1337);
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
        out.clear();
        integer(&mut out, 8, 0, 42);
        assert_eq!(out, [0x2a]);
    }

    #[test]
    fn a_literal_by_name_index_and_by_name() {
        let mut out = Vec::new();
        literal(&mut out, 4, b"", b"/x");
        assert_eq!(out, [0x04, 0x02, b'/', b'x']);
        out.clear();
        literal(&mut out, 0, b"a", b"b");
        assert_eq!(out, [0x00, 0x01, b'a', 0x01, b'b']);
    }
}

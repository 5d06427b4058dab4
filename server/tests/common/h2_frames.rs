//! HTTP/2 frames written by hand (RFC 9113 §4.1), for peers that misbehave on purpose.

/// A frame: 24-bit length, type, flags, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK: the block of `fields`, each a literal.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        hpack_literal(&mut block, name, value);
    }
    block
}

/// HPACK (RFC 7541 §6.2.2): a header field as a literal, not indexed, with a literal name.
pub fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    fn length(block: &mut Vec<u8>, mut n: usize) {
        // A 7-bit prefix (no Huffman coding), then 7 bits a byte (§5.1).
        if n < 127 {
            block.push(n as u8);
            return;
        }
        block.push(127);
        n -= 127;
        while n >= 128 {
            block.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        block.push(n as u8);
    }
    block.push(0);
    length(block, name.len());
    block.extend_from_slice(name.as_bytes());
    length(block, value.len());
    block.extend_from_slice(value.as_bytes());
}

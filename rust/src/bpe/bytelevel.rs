//! GPT-2's byte-to-unicode alphabet: the printable form in which byte-level BPE vocabularies store
//! their tokens in `tokenizer.json` (printable bytes map to themselves, the others to U+0100..).

use std::sync::OnceLock;

fn tables() -> &'static ([char; 256], ahash::AHashMap<char, u8>) {
    static T: OnceLock<([char; 256], ahash::AHashMap<char, u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let mut enc = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..=255u8 {
            let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
            enc[b as usize] = if printable {
                char::from(b)
            } else {
                n += 1;
                char::from_u32(255 + n).expect("in range")
            };
        }
        let dec = enc.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        (enc, dec)
    })
}

/// The printable string of a token's bytes.
pub fn encode(bytes: &[u8]) -> String {
    let enc = &tables().0;
    bytes.iter().map(|&b| enc[b as usize]).collect()
}

/// The bytes of a printable token string; `None` if a char is outside the alphabet.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let dec = &tables().1;
    s.chars().map(|c| dec.get(&c).copied()).collect()
}

/// Bytes UTF-8 text never holds (0xC0, 0xC1, 0xF5..=0xFF): a byte-level vocabulary may leave them
/// out, since text never asks for them.
pub fn never_in_utf8(b: u8) -> bool {
    b == 0xC0 || b == 0xC1 || b >= 0xF5
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_all_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        let s = super::encode(&all);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(super::decode(&s).unwrap(), all);
        assert_eq!(super::encode(b" a"), "\u{120}a");
    }
}

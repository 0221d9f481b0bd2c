//! Input generation: a small seeded random generator, byte mutations and random JSON.

use serde_json::{Map, Value};

/// xorshift64*: fast, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes that break parsers more often than random ones.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\xc3",
    b"\n",
    b"\r\n",
    b"'",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"- ",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"<<: ",
    b"~",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e999",
    b"$(id)",
    b"`id`",
    b"\xe2\x80\xae",
    b"\t",
    b"---\n",
    b"...\n",
];

/// A mutation of one of `seeds` (or of two spliced together).
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds
        .get(rng.below(seeds.len()))
        .cloned()
        .unwrap_or_default();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                data.drain(a..b);
            }
            3 => {
                let i = rng.below(len + 1);
                let bytes = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(i..i, bytes.iter().copied());
            }
            4 if len > 0 => {
                // Repeat a slice: deep nesting, long strings, many keys.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                let piece = data[a..b].to_vec();
                let times = 1 + rng.below(64);
                let at = rng.below(len + 1);
                let repeated: Vec<u8> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * times)
                    .collect();
                data.splice(at..at, repeated);
            }
            5 if !seeds.is_empty() => {
                // Splice with another seed.
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => {
                data.truncate(rng.below(len));
            }
            7 if len >= 4 => {
                // Overwrite 4 bytes with an edge-case integer (lengths, counts).
                let i = rng.below(len - 3);
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, 65535][rng.below(6)];
                data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next() as u8);
            }
        }
        if data.len() > 1 << 20 {
            data.truncate(1 << 20);
        }
    }
    data
}

/// A random string: ASCII, control characters, quotes and non-ASCII.
pub fn string(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a", "Z", "0", " ", "\n", "\t", "\0", "'", "\"", "\\", "$", "`", "=", "#", ":", "-", "é",
        "☃", "\u{202e}", "\u{feff}", "$(id)", "${HOME}", "\r\n", "---", "~", "null", "yes", "0x10",
        "1e3", "{}", "[]",
    ];
    let n = rng.below(12);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

/// A random JSON value, at most `depth` levels deep.
pub fn value(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth == 0 { 5 } else { 7 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => match rng.below(4) {
            0 => Value::from(rng.next() as i64),
            1 => Value::from(rng.next()),
            2 => serde_json::Number::from_f64(f64::from_bits(rng.next()))
                .map_or(Value::Null, Value::Number),
            _ => Value::from(rng.below(100) as i64 - 50),
        },
        3 | 4 => Value::String(string(rng)),
        5 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        _ => Value::Object(object(rng, depth - 1)),
    }
}

/// A random JSON object (parameter names included: empty, odd characters, near-collisions).
pub fn object(rng: &mut Rng, depth: usize) -> Map<String, Value> {
    let mut m = Map::new();
    for _ in 0..rng.below(6) {
        let key = if rng.one_in(3) {
            ["msg", "MSG", "m-sg", "m.sg", "PATH", "IFS", "a b", ""][rng.below(8)].to_string()
        } else {
            string(rng)
        };
        m.insert(key, value(rng, depth));
    }
    m
}

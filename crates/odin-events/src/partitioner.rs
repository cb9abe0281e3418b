//! Kafka's default partitioner for keyed records: murmur2 of the key, as the Java client and
//! kafkajs compute it, so this project and other Kafka clients agree on where a token lives.

/// Kafka's murmur2 (seed `0x9747b28c`), returning the same signed value as
/// `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `partitions` (Kafka's `toPositive(murmur2) % n`).
///
/// # Panics
/// Never for `partitions >= 1`; a non-positive count is a caller bug and maps to 0.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    ((murmur2(key) & 0x7fff_ffff) as u32 % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for key in [
            "BTC",
            "ETH",
            "SOL",
            "0x0000000000000000000000000000000000000001",
        ] {
            let p = partition_for_key(key.as_bytes(), 12);
            assert!((0..12).contains(&p));
            assert_eq!(p, partition_for_key(key.as_bytes(), 12));
        }
        // toPositive(murmur2("foobar")) % 12, computed by hand from the Kafka vector.
        assert_eq!(
            partition_for_key(b"foobar", 12),
            ((-790_332_482i32 & 0x7fff_ffff) % 12)
        );
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}

//! xorshift64*: enough randomness for a workload, no dependency. Shared by
//! the benchmark's production-shaped run and the soak (`examples/soak.rs`).

/// The generator's state; any odd seed.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, `n`).
    #[allow(dead_code)] // the benchmark draws only `uniform`
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

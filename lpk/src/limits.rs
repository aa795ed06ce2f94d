//! Bounds that keep a hostile package from exhausting the host: entry counts, unpacked size,
//! compression ratio, and the size of the files Den reads into memory.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// The limits a package must stay within.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most entries in the package and in each nested archive, together.
    pub max_entries: u64,
    /// Most bytes once everything is unpacked (files, content, decompressed image layers).
    pub max_unpacked: u64,
    /// Highest compression ratio of any compressed stream past its first [`Limits::ratio_floor`] bytes.
    pub max_ratio: u64,
    /// Streams smaller than this are not ratio-checked (tiny files compress very well).
    pub ratio_floor: u64,
    /// Largest metadata file read into memory (`manifest.yml`, `package.yml`, JSON in `images/`).
    pub max_meta: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_entries: 200_000, max_unpacked: 32 << 30, max_ratio: 200, ratio_floor: 4 << 20, max_meta: 1 << 20 }
    }
}

/// Why a metered read stopped; carried inside an `io::Error` and turned into a refusal.
#[derive(Debug)]
pub struct Exceeded(pub String);

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Exceeded {}

/// If `e` came from a [`Meter`], the limit it reports.
pub fn exceeded(e: &io::Error) -> Option<String> {
    e.get_ref().and_then(|i| i.downcast_ref::<Exceeded>()).map(|x| x.0.clone())
}

/// The unpacked-bytes budget shared by all streams of one package.
#[derive(Clone)]
pub struct Budget {
    used: Rc<Cell<u64>>,
    max: u64,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Budget {
        Budget { used: Rc::new(Cell::new(0)), max }
    }

    /// Takes `n` bytes from the budget, or says it is spent.
    pub fn take(&self, n: u64) -> Result<(), String> {
        let used = self.used.get().saturating_add(n);
        if used > self.max {
            return Err(format!("the package unpacks to more than {} MiB, the limit", self.max >> 20));
        }
        self.used.set(used);
        Ok(())
    }

    /// Bytes taken so far.
    pub fn used(&self) -> u64 {
        self.used.get()
    }
}

/// Counts bytes read through it into a shared counter.
pub struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Counted<R> {
    /// Wraps `inner`; the count is readable through the returned handle.
    pub fn new(inner: R) -> (Counted<R>, Rc<Cell<u64>>) {
        let count = Rc::new(Cell::new(0));
        (Counted { inner, count: count.clone() }, count)
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Meters the output of a decompressor: charges the budget and refuses ratios past the limit,
/// comparing with the compressed bytes consumed so far (`input`).
pub struct Meter<R> {
    inner: R,
    out: u64,
    input: Option<Rc<Cell<u64>>>,
    max: Option<u64>,
    budget: Budget,
    limits: Limits,
}

impl<R: Read> Meter<R> {
    /// Meters `inner`; `input` counts the compressed bytes behind it (none for stored data);
    /// `max` is the declared size the stream may not exceed.
    pub fn new(inner: R, input: Option<Rc<Cell<u64>>>, max: Option<u64>, budget: &Budget, limits: &Limits) -> Meter<R> {
        Meter { inner, out: 0, input, max, budget: budget.clone(), limits: limits.clone() }
    }

    /// Bytes that came out so far.
    pub fn out(&self) -> u64 {
        self.out
    }
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let fail = |m: String| Err(io::Error::other(Exceeded(m)));
        if let Some(max) = self.max {
            if self.out > max {
                return fail(format!("holds more than the {max} bytes its header declares"));
            }
        }
        if let Err(m) = self.budget.take(n as u64) {
            return fail(m);
        }
        if let Some(input) = &self.input {
            let packed = input.get().max(1);
            if self.out > self.limits.ratio_floor && self.out / packed > self.limits.max_ratio {
                return fail(format!(
                    "decompresses more than {}:1 (an archive bomb); the limit is {}:1",
                    self.out / packed,
                    self.limits.max_ratio
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_is_stopped_early() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&vec![0u8; 64 << 20]).unwrap();
        let packed = gz.finish().unwrap();
        let limits = Limits::default();
        let budget = Budget::new(limits.max_unpacked);
        let (counted, input) = Counted::new(&packed[..]);
        let mut m = Meter::new(flate2::read::GzDecoder::new(counted), Some(input), None, &budget, &limits);
        let e = io::copy(&mut m, &mut io::sink()).unwrap_err();
        assert!(exceeded(&e).unwrap().contains("archive bomb"), "{e}");
        assert!(m.out() < 8 << 20, "stopped after {} bytes", m.out());
    }

    #[test]
    fn the_budget_is_shared() {
        let limits = Limits { max_unpacked: 10, ..Limits::default() };
        let budget = Budget::new(limits.max_unpacked);
        let mut a = Meter::new(&b"123456"[..], None, None, &budget, &limits);
        io::copy(&mut a, &mut io::sink()).unwrap();
        let mut b = Meter::new(&b"123456"[..], None, None, &budget, &limits);
        let e = io::copy(&mut b, &mut io::sink()).unwrap_err();
        assert!(exceeded(&e).unwrap().contains("limit"));
        let mut c = Meter::new(&b"123"[..], None, Some(2), &Budget::new(99), &limits);
        assert!(exceeded(&io::copy(&mut c, &mut io::sink()).unwrap_err()).unwrap().contains("declares"));
    }
}

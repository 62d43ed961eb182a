//! The P² algorithm (Jain & Chlamtac, "The P² algorithm for dynamic
//! calculation of quantiles and histograms without storing observations",
//! CACM 28(10), 1985): a streaming quantile estimate from five markers whose
//! heights are adjusted with a piecewise-parabolic formula. Constant memory
//! and O(1) per value. The first `EXACT` values are buffered and the
//! estimate is exact over them (linear interpolation between closest ranks,
//! like numpy's default); the five markers are then initialised from that
//! sorted buffer (rather than from the first five values as in the paper,
//! which converges slowly) and P² takes over: an approximation whose error
//! for smooth distributions
//! the error is typically well under 1% of the range, but it can be larger on
//! heavily skewed or multi-modal data and it depends on arrival order.

/// Values kept (and answered exactly) before switching to the P² markers.
pub(crate) const EXACT: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct P2 {
    p: f64,
    count: u64,
    /// The first values, while count <= EXACT (emptied when the markers take over).
    buf: Vec<f64>,
    /// Marker heights.
    q: [f64; 5],
    /// Actual marker positions (0-based ranks).
    pos: [f64; 5],
    /// Desired marker positions.
    want: [f64; 5],
    /// Increments of the desired positions per observation.
    inc: [f64; 5],
}

/// Exact quantile of sorted values, linear interpolation between closest ranks.
fn exact(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = p * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let (a, b) = (sorted.get(lo).copied()?, sorted.get(hi).copied()?);
    Some(a + (b - a) * (rank - lo as f64))
}

impl P2 {
    pub(crate) fn new(p: f64) -> P2 {
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.5
        };
        P2 {
            p,
            count: 0,
            buf: Vec::new(),
            q: [0.0; 5],
            pos: [0.0; 5],
            want: [0.0; 5],
            inc: [0.0, p / 2.0, p, (1.0 + p) / 2.0, 1.0],
        }
    }

    /// Places the markers on the sorted buffer (n >= 5 values) and drops it.
    fn init_markers(&mut self) {
        let mut v = std::mem::take(&mut self.buf);
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let last = (n - 1) as f64;
        let mut pos = [0usize; 5];
        pos[4] = n - 1;
        for i in 1..4 {
            let want = self.inc[i] * last;
            let lo = pos[i - 1] + 1;
            let hi = n - 1 - (4 - i);
            pos[i] = (want.round() as usize).clamp(lo, hi.max(lo));
        }
        for (i, &at) in pos.iter().enumerate() {
            self.q[i] = v.get(at).copied().unwrap_or(0.0);
            self.pos[i] = at as f64;
            self.want[i] = self.inc[i] * last;
        }
    }

    /// Adds one observation; non-finite values are ignored.
    pub(crate) fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if (self.count as usize) < EXACT {
            self.buf.push(x);
            self.count += 1;
            return;
        }
        if !self.buf.is_empty() {
            self.init_markers();
        }
        self.count += 1;
        let q = &mut self.q;
        let k = if x < q[0] {
            q[0] = x;
            0
        } else if x >= q[4] {
            q[4] = x;
            3
        } else {
            (1..5).find(|&i| x < q[i]).map_or(3, |i| i - 1)
        };
        for i in (k + 1)..5 {
            self.pos[i] += 1.0;
        }
        for i in 0..5 {
            self.want[i] += self.inc[i];
        }
        for i in 1..4 {
            let d = self.want[i] - self.pos[i];
            let n = &self.pos;
            if (d >= 1.0 && n[i + 1] - n[i] > 1.0) || (d <= -1.0 && n[i - 1] - n[i] < -1.0) {
                let s = d.signum();
                let qp = self.parabolic(i, s);
                self.q[i] = if self.q[i - 1] < qp && qp < self.q[i + 1] {
                    qp
                } else {
                    self.linear(i, s)
                };
                self.pos[i] += s;
            }
        }
    }

    fn parabolic(&self, i: usize, s: f64) -> f64 {
        let (q, n) = (&self.q, &self.pos);
        q[i] + s / (n[i + 1] - n[i - 1])
            * ((n[i] - n[i - 1] + s) * (q[i + 1] - q[i]) / (n[i + 1] - n[i])
                + (n[i + 1] - n[i] - s) * (q[i] - q[i - 1]) / (n[i] - n[i - 1]))
    }

    fn linear(&self, i: usize, s: f64) -> f64 {
        let j = if s > 0.0 { i + 1 } else { i - 1 };
        self.q[i] + s * (self.q[j] - self.q[i]) / (self.pos[j] - self.pos[i])
    }

    /// Whether `value` is exact (at most `EXACT` values seen).
    pub(crate) fn is_exact(&self) -> bool {
        self.count as usize <= EXACT
    }

    /// The estimate; `None` before the first value.
    pub(crate) fn value(&self) -> Option<f64> {
        if self.is_exact() {
            let mut v = self.buf.clone();
            v.sort_by(f64::total_cmp);
            return exact(&v, self.p);
        }
        Some(self.q[2])
    }

    /// Values held: at most `EXACT` buffered, then the five markers.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.buf.len().max(5)
    }
}

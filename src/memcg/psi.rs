//! Pressure stall information (`memory.pressure`) of one group: its state, its stall
//! totals and their averages over 10, 60 and 300 s, computed as the kernel's `psi.c`
//! does, in plain integers. The process keeps this state in the group's slot
//! (`pressure.rs` changes it, under a sequence count); a reader in another process
//! (`cgmalloc stat`, `top`) compiles this file too and brings its copy up to its own
//! "now" exactly as the process would, so both sides compute one truth.
//!
//! Two kinds of stall: `some`, while at least one thread charging to the group or a
//! descendant is stalled in the charge path; `full`, while every thread attached to the
//! group or a descendant is.
//!
//! Invariants (what makes the arithmetic exact without a background thread):
//! - the state (`stalled`, `members`, `full`) changes only through [`Psi::set`], which
//!   first takes every sample due ([`Psi::advance`]) and then closes the stretch since
//!   the last change into `total`; so from `since` to now the state has not changed,
//!   and the stall time of any stretch after `since` is known;
//! - `since < next` once `next` is set: every period that ended by the last change has
//!   been sampled;
//! - `avg_total[k]` is the stall time up to the end of the last period sampled.
//!
//! Averages: one sample per 2 s period, the period's stall time as a percentage, decayed
//! into each average with the kernel's factors (`EXP_10s`, `EXP_60s`, `EXP_300s`, in 11-bit
//! fixed point). Periods that passed with no change all sample the same (0 or 100%) and
//! are decayed in one step (`calc_load_n`). Read averages are as of the last period end,
//! at most 2 s old, as the kernel's are.

#![forbid(unsafe_code)]

/// Index of `some` and of `full` in the arrays below.
pub const SOME: usize = 0;
pub const FULL: usize = 1;
pub const KINDS: [&str; 2] = ["some", "full"];

/// Length of a sampling period (the kernel's `PSI_FREQ`).
pub const PERIOD_NS: u64 = 2_000_000_000;

const FSHIFT: u32 = 11;
const FIXED_1: u64 = 1 << FSHIFT;
/// `FIXED_1 / exp(2 s / window)` for the 10, 60 and 300 s windows.
const EXP: [u64; 3] = [1677, 1981, 2034];

/// Words of the stored form ([`Psi::to_words`]).
pub const WORDS: usize = 15;

/// The pressure state of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Psi {
    /// Threads stalled charging to the group or a descendant.
    pub stalled: u64,
    /// Of those, the threads attached to the group or a descendant.
    pub members: u64,
    /// 1 while every thread attached to the group or a descendant is stalled.
    pub full: u64,
    /// When the state last changed (ns, `CLOCK_MONOTONIC`).
    pub since: u64,
    /// Stall time of each kind up to `since`, in ns.
    pub total: [u64; 2],
    /// Stall time of each kind up to the end of the last period sampled.
    pub avg_total: [u64; 2],
    /// The averages over 10, 60 and 300 s of each kind: percent in 11-bit fixed point.
    pub avg: [[u64; 3]; 2],
    /// When the current period ends; 0 until the first change.
    pub next: u64,
}

/// What `memory.pressure` shows of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Values {
    /// `avg10`, `avg60`, `avg300` of each kind, in percent (11-bit fixed point).
    pub avg: [[u64; 3]; 2],
    /// `total` of each kind, in microseconds.
    pub total_us: [u64; 2],
}

impl Values {
    /// An average in percent as a float.
    pub fn percent(fixed: u64) -> f64 {
        fixed as f64 / FIXED_1 as f64
    }

    /// An average's whole percent and hundredths, truncated as the kernel prints them
    /// (`LOAD_INT`, `LOAD_FRAC`).
    pub fn int_frac(fixed: u64) -> (u64, u64) {
        (fixed >> FSHIFT, ((fixed & (FIXED_1 - 1)) * 100) >> FSHIFT)
    }

    /// The two lines of `memory.pressure`, each ending in a newline.
    pub fn write(&self, out: &mut impl FnMut(&[u8])) {
        for (k, kind) in KINDS.iter().enumerate() {
            out(kind.as_bytes());
            let names: [&[u8]; 3] = [b" avg10=", b" avg60=", b" avg300="];
            for (w, name) in names.iter().enumerate() {
                out(name);
                let (i, f) = Self::int_frac(self.avg[k][w]);
                push_u64(out, i);
                out(b".");
                if f < 10 {
                    out(b"0");
                }
                push_u64(out, f);
            }
            out(b" total=");
            push_u64(out, self.total_us[k]);
            out(b"\n");
        }
    }
}

fn push_u64(out: &mut impl FnMut(&[u8]), mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out(&buf[i..]);
}

/// `calc_load` of the kernel: one step of the exponential decay of `load` towards
/// `active` by `exp`.
fn calc_load(load: u64, exp: u64, active: u64) -> u64 {
    let mut new = load * exp + active * (FIXED_1 - exp);
    if active >= load {
        new += FIXED_1 - 1;
    }
    new / FIXED_1
}

/// `fixed_power_int` of the kernel: `x^n` in 11-bit fixed point, rounded at each step.
fn fixed_power(mut x: u64, mut n: u64) -> u64 {
    let mut result = FIXED_1;
    let half = 1 << (FSHIFT - 1);
    while n != 0 {
        if n & 1 != 0 {
            result = (result * x + half) >> FSHIFT;
        }
        n >>= 1;
        x = (x * x + half) >> FSHIFT;
    }
    result
}

/// The sample of a period with `stall` ns of stall: percent in fixed point.
fn percent(stall: u64) -> u64 {
    stall.min(PERIOD_NS) * 100 * FIXED_1 / PERIOD_NS
}

impl Psi {
    /// True while stall of kind `k` goes on.
    pub fn active(&self, k: usize) -> bool {
        if k == SOME {
            self.stalled != 0
        } else {
            self.full != 0
        }
    }

    /// Stall time of kind `k` up to `now` (not before `since`).
    pub fn total_at(&self, k: usize, now: u64) -> u64 {
        if self.active(k) {
            self.total[k] + now.saturating_sub(self.since)
        } else {
            self.total[k]
        }
    }

    /// Takes the sample of every period that ended by `now`.
    pub fn advance(&mut self, now: u64) {
        if self.next == 0 {
            self.next = now.max(self.since) + PERIOD_NS;
            return;
        }
        if now < self.next {
            return;
        }
        // The first period that ended: the stall it saw is what the totals grew by up
        // to its end (the state may have changed within it, never after `since`).
        let end = self.next;
        for k in 0..2 {
            let upto = self.total_at(k, end);
            let sample = upto.saturating_sub(self.avg_total[k]).min(PERIOD_NS);
            self.avg_total[k] += sample;
            let pct = percent(sample);
            for (a, &e) in self.avg[k].iter_mut().zip(&EXP) {
                *a = calc_load(*a, e, pct);
            }
        }
        self.next = end + PERIOD_NS;
        if now < self.next {
            return;
        }
        // Whole periods since then, in the state that has held since `since`: each
        // sampled all (stalled) or nothing.
        let n = (now - self.next) / PERIOD_NS + 1;
        for k in 0..2 {
            let active = self.active(k);
            let pct = if active { 100 * FIXED_1 } else { 0 };
            for (a, &e) in self.avg[k].iter_mut().zip(&EXP) {
                *a = calc_load(*a, fixed_power(e, n), pct);
            }
            if active {
                self.avg_total[k] += n * PERIOD_NS;
            }
        }
        self.next += n * PERIOD_NS;
    }

    /// The state becomes `stalled`, `members`, `full` at `now`.
    pub fn set(&mut self, now: u64, stalled: u64, members: u64, full: bool) {
        let now = now.max(self.since);
        self.advance(now);
        for k in 0..2 {
            self.total[k] = self.total_at(k, now);
        }
        self.since = now;
        self.stalled = stalled;
        self.members = members;
        self.full = full as u64;
    }

    /// What `memory.pressure` shows at `now`.
    pub fn values(&self, now: u64) -> Values {
        let mut p = *self;
        p.advance(now);
        Values {
            avg: p.avg,
            total_us: [p.total_at(SOME, now) / 1000, p.total_at(FULL, now) / 1000],
        }
    }

    /// The stored form.
    pub fn to_words(self) -> [u64; WORDS] {
        let [s, f] = self.avg;
        [
            self.stalled,
            self.members,
            self.full,
            self.since,
            self.total[0],
            self.total[1],
            self.avg_total[0],
            self.avg_total[1],
            s[0],
            s[1],
            s[2],
            f[0],
            f[1],
            f[2],
            self.next,
        ]
    }

    pub fn from_words(w: &[u64; WORDS]) -> Psi {
        Psi {
            stalled: w[0],
            members: w[1],
            full: w[2],
            since: w[3],
            total: [w[4], w[5]],
            avg_total: [w[6], w[7]],
            avg: [[w[8], w[9], w[10]], [w[11], w[12], w[13]]],
            next: w[14],
        }
    }
}

/// A trigger's window (the kernel's `psi_window`): the stall growth over the last
/// `size` ns, with the previous window's growth interpolated for the part not yet
/// covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub size: u64,
    pub start: u64,
    pub start_value: u64,
    pub prev_growth: u64,
}

impl Window {
    pub fn new(size: u64, now: u64, value: u64) -> Window {
        Window {
            size,
            start: now,
            start_value: value,
            prev_growth: 0,
        }
    }

    /// The growth of `value` over the window ending at `now` (`window_update`).
    pub fn update(&mut self, now: u64, value: u64) -> u64 {
        let elapsed = now.saturating_sub(self.start);
        let mut growth = value.saturating_sub(self.start_value);
        if elapsed > self.size {
            self.start = now;
            self.start_value = value;
            self.prev_growth = growth;
        } else {
            let remaining = self.size - elapsed;
            growth += (self.prev_growth as u128 * remaining as u128 / self.size as u128) as u64;
        }
        growth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn pct(fixed: u64) -> f64 {
        Values::percent(fixed)
    }

    #[test]
    fn idle_group_reads_zero() {
        let p = Psi::default();
        let v = p.values(100 * S);
        assert_eq!(v, Values::default());
        let mut out = Vec::new();
        v.write(&mut |b| out.extend_from_slice(b));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
        );
    }

    #[test]
    fn totals_follow_the_state() {
        let mut p = Psi::default();
        p.set(10 * S, 1, 1, false);
        p.set(10 * S + S / 2, 2, 2, true);
        p.set(11 * S, 1, 1, false);
        p.set(12 * S, 0, 0, false);
        let v = p.values(20 * S);
        assert_eq!(v.total_us, [2_000_000, 500_000]);
        // Read during a stall, the part so far counts.
        p.set(30 * S, 1, 1, false);
        assert_eq!(p.values(31 * S).total_us[SOME], 3_000_000);
    }

    #[test]
    fn a_constant_stall_converges_and_decays() {
        // Stalled half of every period for 300 s.
        let mut p = Psi::default();
        let mut t = S;
        p.set(t, 0, 0, false);
        for _ in 0..150 {
            p.set(t, 1, 1, true);
            p.set(t + S, 0, 0, false);
            t += 2 * S;
        }
        let v = p.values(t);
        assert!((pct(v.avg[SOME][0]) - 50.0).abs() < 1.0, "{v:?}");
        assert!((pct(v.avg[SOME][1]) - 50.0).abs() < 1.0, "{v:?}");
        assert!(pct(v.avg[SOME][2]) > 30.0, "{v:?}");
        assert_eq!(v.avg[SOME], v.avg[FULL]);
        // Quiet for 7 s and more: avg10 about halves (e^-0.8 after 4 periods).
        let later = p.values(t + 8 * S);
        let ratio = pct(later.avg[SOME][0]) / pct(v.avg[SOME][0]);
        assert!((0.40..0.50).contains(&ratio), "{ratio}");
        // Long after, nothing is left, and the many periods decay in one step.
        let gone = p.values(t + 3600 * S);
        assert_eq!(gone.avg[SOME], [0, 0, 0]);
        assert_eq!(gone.total_us[SOME], 150_000_000);
    }

    #[test]
    fn a_stall_across_many_periods_counts_all_of_them() {
        let mut p = Psi::default();
        p.set(S, 1, 1, false);
        let v = p.values(S + 21 * S);
        // Ten periods ended, all stalled: avg10 is 1 - e^-2 of 100%.
        assert!((pct(v.avg[SOME][0]) - 86.5).abs() < 1.0, "{v:?}");
        assert_eq!(v.avg[FULL], [0, 0, 0]);
        // Sampling in steps gives what one step gives, but for rounding.
        let mut q = p;
        for i in 1..=21 {
            q.advance(S + i * S);
        }
        for (a, b) in q.avg[SOME].iter().zip(&v.avg[SOME]) {
            assert!((pct(*a) - pct(*b)).abs() < 0.2, "{a} {b}");
        }
    }

    #[test]
    fn stored_form_round_trips() {
        let mut p = Psi::default();
        p.set(S, 3, 2, true);
        p.set(7 * S, 1, 0, false);
        assert_eq!(Psi::from_words(&p.to_words()), p);
    }

    #[test]
    fn window_interpolates_the_previous_one() {
        let mut w = Window::new(S, 0, 0);
        assert_eq!(w.update(S / 2, 100), 100);
        // Past the window: it restarts, remembering its growth.
        assert_eq!(w.update(S + 1, 400), 400);
        // Half-way through the next, half the previous growth is assumed.
        assert_eq!(w.update(S + 1 + S / 2, 400), 200);
    }

    #[test]
    fn kernel_format() {
        let v = Values {
            avg: [[2048 * 12 + 1024, 0, 2048 * 100], [500, 0, 0]],
            total_us: [123, 0],
        };
        let mut out = Vec::new();
        v.write(&mut |b| out.extend_from_slice(b));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "some avg10=12.50 avg60=0.00 avg300=100.00 total=123\n\
             full avg10=0.24 avg60=0.00 avg300=0.00 total=0\n"
        );
    }
}

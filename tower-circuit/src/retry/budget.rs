//! The retry budget: retries as an exact share of recent requests.
//!
//! tower's `TpsBudget` was used before. It stores the share as a whole
//! number of deposits per retry, `(1 / share) as isize`, which truncates:
//! a share of 0.7 became one retry per request (100 %) and 0.3 one per
//! three (33 %). This budget keeps the share in millionths, so the
//! fraction a user configures is the fraction enforced, to 1 ppm, for any
//! share from 0 to 10.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::window::lock;

/// One retry, in budget units: the share is kept to 1 ppm.
const UNIT: i64 = 1_000_000;
/// The window is kept in this many slots, each expiring as a whole.
const SLOTS: usize = 10;

/// Retries allowed: `share` per request deposited over the last `window`,
/// plus a reserve of `floor_per_sec` per second of the window.
#[derive(Debug)]
pub(crate) struct RetryBudgetState {
    ledger: Mutex<Ledger>,
    slot: Duration,
    deposit: i64,
    reserve: i64,
}

#[derive(Debug)]
struct Ledger {
    /// Net units per slot: deposits less withdrawals.
    slots: [i64; SLOTS],
    /// The slot being written.
    index: usize,
    /// When the slot being written started.
    started: Instant,
}

impl RetryBudgetState {
    /// `window` is 1 to 60 s and `share` 0 to 10, checked by the builder.
    pub(crate) fn new(window: Duration, floor_per_sec: u32, share: f32) -> Self {
        let deposit = (f64::from(share) * UNIT as f64).round() as i64;
        let reserve = i64::from(floor_per_sec)
            .saturating_mul(window.as_secs() as i64)
            .saturating_mul(UNIT);
        RetryBudgetState {
            ledger: Mutex::new(Ledger {
                slots: [0; SLOTS],
                index: 0,
                started: Instant::now(),
            }),
            slot: window / SLOTS as u32,
            deposit,
            reserve,
        }
    }

    /// Counts one request.
    pub(crate) fn deposit(&self) {
        let mut ledger = lock(&self.ledger);
        self.expire(&mut ledger, Instant::now());
        let i = ledger.index;
        ledger.slots[i] = ledger.slots[i].saturating_add(self.deposit);
    }

    /// Takes one retry from the budget, if the budget holds one.
    pub(crate) fn withdraw(&self) -> bool {
        let mut ledger = lock(&self.ledger);
        self.expire(&mut ledger, Instant::now());
        let balance = ledger
            .slots
            .iter()
            .fold(self.reserve, |sum, n| sum.saturating_add(*n));
        if balance < UNIT {
            return false;
        }
        let i = ledger.index;
        ledger.slots[i] -= UNIT;
        true
    }

    /// Drops the slots that left the window by `now`.
    fn expire(&self, ledger: &mut Ledger, now: Instant) {
        let elapsed = now.saturating_duration_since(ledger.started);
        if elapsed < self.slot {
            return;
        }
        let passed = (elapsed.as_nanos() / self.slot.as_nanos().max(1)).min(SLOTS as u128) as usize;
        for _ in 0..passed {
            ledger.index = (ledger.index + 1) % SLOTS;
            ledger.slots[ledger.index] = 0;
        }
        ledger.started = if passed == SLOTS {
            now
        } else {
            ledger.started + self.slot * passed as u32
        };
    }
}

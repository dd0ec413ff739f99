//! Per-case hold-back buffer: each case's events are applied in case sequence everywhere; an
//! event that arrives before its predecessors waits (DESIGN.md "Custody", invariant 4).
//!
//! Invariants: `offer` releases events only in strictly consecutive case sequence, each
//! sequence at most once; nothing below the next expected sequence is ever released again;
//! the buffer never holds more than `HELD_PER_CASE_MAX` events of a case nor
//! `HELD_TOTAL_MAX` events in all. Holding is not durability: the shell makes held events
//! durable before acknowledging them.

use std::collections::BTreeMap;

/// Most events held for one case: a case has at most a few dozen events; more waiting behind
/// a gap means a broken or hostile peer.
pub const HELD_PER_CASE_MAX: usize = 1024;
/// Most events held over all cases of one buffer set: bounds memory when many cases have gaps
/// at once (a link that lost a batch); beyond it the sender is asked to resend later.
pub const HELD_TOTAL_MAX: usize = 65_536;

/// An event with a position in its case's sequence (1 for the case's first event).
pub trait Sequenced {
    fn seq(&self) -> u64;
}

/// What became of an offered event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer<E> {
    /// The event was the next expected: it and every held event it unblocks, in order.
    Ready(Vec<E>),
    /// The event waits for a gap to fill.
    Held,
    /// Already released (its sequence is below the next expected), or the same event is
    /// already held. Sequence 0, never valid, is below every position and reported here.
    Duplicate,
    /// A different event with the same sequence is already held: one of them is forged or
    /// the custodian wrote twice; the case must be quarantined.
    Conflict { seq: u64 },
    /// Holding it would pass a limit (or its sequence is `u64::MAX`, after which no position
    /// exists); nothing was stored, the sender may offer it again later.
    Overflow,
}

/// The hold-back buffer of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldBack<E> {
    next: u64,
    pending: BTreeMap<u64, E>,
}

impl<E> Default for HoldBack<E> {
    fn default() -> Self {
        HoldBack::new()
    }
}

impl<E> HoldBack<E> {
    /// A buffer for a case nothing of which has been applied.
    pub fn new() -> HoldBack<E> {
        HoldBack::starting_at(1)
    }

    /// A buffer for a case whose events below `next` are applied (a reloaded store). `0` is
    /// read as 1: sequences start at 1.
    pub fn starting_at(next: u64) -> HoldBack<E> {
        HoldBack {
            next: next.max(1),
            pending: BTreeMap::new(),
        }
    }

    /// The sequence the case is waiting for.
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    /// How many events are waiting.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// The sequences waiting, in order (for supervision and resend requests).
    pub fn held_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.keys().copied()
    }

    /// Moves the position to `next` (0 is read as 1): held events below it are dropped as
    /// applied, and the run of held events starting at it is returned, ready to apply.
    pub fn set_next(&mut self, next: u64) -> Vec<E> {
        self.next = next.max(1);
        self.pending = self.pending.split_off(&self.next);
        self.drain()
    }

    /// Pops the held run starting at `next`, advancing `next` past it.
    fn drain(&mut self) -> Vec<E> {
        let mut out = Vec::new();
        // `next < u64::MAX` whenever an event at `next` is held: `offer` refuses u64::MAX.
        while self.next < u64::MAX {
            let Some(e) = self.pending.remove(&self.next) else {
                break;
            };
            out.push(e);
            self.next += 1;
        }
        out
    }
}

impl<E: Sequenced + PartialEq> HoldBack<E> {
    /// Offers one event of the case; see [`Offer`].
    pub fn offer(&mut self, e: E) -> Offer<E> {
        self.offer_within(e, usize::MAX)
    }

    /// `offer` with a further bound on how many more events may be held (the set's total).
    fn offer_within(&mut self, e: E, room: usize) -> Offer<E> {
        let seq = e.seq();
        if seq < self.next {
            return Offer::Duplicate;
        }
        if seq == u64::MAX {
            return Offer::Overflow;
        }
        if seq == self.next {
            self.next += 1;
            let mut out = vec![e];
            out.extend(self.drain());
            return Offer::Ready(out);
        }
        if let Some(held) = self.pending.get(&seq) {
            return if *held == e {
                Offer::Duplicate
            } else {
                Offer::Conflict { seq }
            };
        }
        if self.pending.len() >= HELD_PER_CASE_MAX || room == 0 {
            return Offer::Overflow;
        }
        self.pending.insert(seq, e);
        Offer::Held
    }
}

/// One hold-back buffer per case, keyed by case id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldBacks<K: Ord, E> {
    cases: BTreeMap<K, HoldBack<E>>,
    /// Events held over all cases.
    total: usize,
}

impl<K: Ord, E> Default for HoldBacks<K, E> {
    fn default() -> Self {
        HoldBacks::new()
    }
}

impl<K: Ord, E> HoldBacks<K, E> {
    pub fn new() -> HoldBacks<K, E> {
        HoldBacks {
            cases: BTreeMap::new(),
            total: 0,
        }
    }

    /// The sequence `key`'s case is waiting for (1 for a case never seen).
    pub fn next_expected(&self, key: &K) -> u64 {
        self.cases.get(key).map_or(1, HoldBack::next_expected)
    }

    /// Events held for `key`'s case.
    pub fn held(&self, key: &K) -> usize {
        self.cases.get(key).map_or(0, HoldBack::held)
    }

    /// Events held over all cases.
    pub fn held_total(&self) -> usize {
        self.total
    }

    /// Sets the applied position of `key`'s case (a store reloaded at a known position); see
    /// [`HoldBack::set_next`]. Returns the held events that are now ready, in order.
    pub fn set_next(&mut self, key: K, next: u64) -> Vec<E> {
        let buffer = self.cases.entry(key).or_default();
        let before = buffer.held();
        let ready = buffer.set_next(next);
        self.total = self
            .total
            .saturating_sub(before.saturating_sub(buffer.held()));
        ready
    }
}

impl<K: Ord, E: Sequenced + PartialEq> HoldBacks<K, E> {
    /// Offers one event of `key`'s case; see [`Offer`].
    pub fn offer(&mut self, key: K, e: E) -> Offer<E> {
        let room = HELD_TOTAL_MAX.saturating_sub(self.total);
        let buffer = self.cases.entry(key).or_default();
        let before = buffer.held();
        let offer = buffer.offer_within(e, room);
        let after = buffer.held();
        // Exactly one of these is non-zero: an offer holds one event or releases some.
        self.total = (self.total + after).saturating_sub(before);
        offer
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A test event: its sequence and a body that tells forgeries apart.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Ev {
        seq: u64,
        body: char,
    }

    impl Sequenced for Ev {
        fn seq(&self) -> u64 {
            self.seq
        }
    }

    fn ev(seq: u64) -> Ev {
        Ev { seq, body: 'a' }
    }

    /// What an offer must answer, with `Ready` as its sequences.
    #[derive(Debug, PartialEq)]
    enum Want {
        Ready(Vec<u64>),
        Held,
        Duplicate,
        Conflict(u64),
        Overflow,
    }

    fn seen(offer: Offer<Ev>) -> Want {
        match offer {
            Offer::Ready(events) => Want::Ready(events.iter().map(|e| e.seq).collect()),
            Offer::Held => Want::Held,
            Offer::Duplicate => Want::Duplicate,
            Offer::Conflict { seq } => Want::Conflict(seq),
            Offer::Overflow => Want::Overflow,
        }
    }

    fn check(name: &str, start: u64, deliveries: &[(Ev, Want)], next: u64, held: usize) {
        let mut buffer = HoldBack::starting_at(start);
        for (i, (e, want)) in deliveries.iter().enumerate() {
            assert_eq!(seen(buffer.offer(e.clone())), *want, "{name} #{i} ({e:?})");
        }
        assert_eq!(buffer.next_expected(), next, "{name}: next");
        assert_eq!(buffer.held(), held, "{name}: held");
    }

    #[test]
    fn delivery_orders() {
        use Want::*;
        let forged = |seq| Ev { seq, body: 'z' };
        check(
            "in order",
            1,
            &[
                (ev(1), Ready(vec![1])),
                (ev(2), Ready(vec![2])),
                (ev(3), Ready(vec![3])),
            ],
            4,
            0,
        );
        check(
            "reversed",
            1,
            &[(ev(3), Held), (ev(2), Held), (ev(1), Ready(vec![1, 2, 3]))],
            4,
            0,
        );
        check(
            "gap stays held",
            1,
            &[
                (ev(2), Held),
                (ev(4), Held),
                (ev(1), Ready(vec![1, 2])),
                (ev(5), Held),
                (ev(3), Ready(vec![3, 4, 5])),
            ],
            6,
            0,
        );
        check(
            "duplicates, applied and held",
            1,
            &[
                (ev(1), Ready(vec![1])),
                (ev(1), Duplicate),
                (ev(3), Held),
                (ev(3), Duplicate),
                (ev(2), Ready(vec![2, 3])),
                (ev(3), Duplicate),
            ],
            4,
            0,
        );
        check(
            "conflict with a held event; the held one stays",
            1,
            &[
                (ev(2), Held),
                (forged(2), Conflict(2)),
                (ev(1), Ready(vec![1, 2])),
            ],
            3,
            0,
        );
        check(
            "sequence 0 is never applied",
            1,
            &[(ev(0), Duplicate), (ev(1), Ready(vec![1]))],
            2,
            0,
        );
        check(
            "reloaded store",
            10,
            &[
                (ev(9), Duplicate),
                (ev(11), Held),
                (ev(10), Ready(vec![10, 11])),
            ],
            12,
            0,
        );
        check(
            "no position after u64::MAX",
            u64::MAX - 1,
            &[
                (ev(u64::MAX), Overflow),
                (ev(u64::MAX - 1), Ready(vec![u64::MAX - 1])),
                (ev(u64::MAX), Overflow),
            ],
            u64::MAX,
            0,
        );
        check(
            "starting at 0 reads as 1",
            0,
            &[(ev(0), Duplicate), (ev(1), Ready(vec![1]))],
            2,
            0,
        );
    }

    #[test]
    fn overflow_at_the_per_case_limit() {
        let mut buffer = HoldBack::new();
        let limit = u64::try_from(HELD_PER_CASE_MAX).unwrap();
        for seq in 2..=limit + 1 {
            assert_eq!(buffer.offer(ev(seq)), Offer::Held, "{seq}");
        }
        assert_eq!(buffer.held(), HELD_PER_CASE_MAX);
        assert_eq!(buffer.offer(ev(limit + 2)), Offer::Overflow);
        assert_eq!(buffer.held(), HELD_PER_CASE_MAX);
        // A duplicate of a held event is still recognised, and the gap still fills.
        assert_eq!(buffer.offer(ev(5)), Offer::Duplicate);
        assert_eq!(
            buffer.offer(Ev { seq: 5, body: 'z' }),
            Offer::Conflict { seq: 5 }
        );
        match buffer.offer(ev(1)) {
            Offer::Ready(events) => assert_eq!(events.len(), HELD_PER_CASE_MAX + 1),
            other => panic!("expected Ready, got {other:?}"),
        }
        assert_eq!(buffer.next_expected(), limit + 2);
        assert_eq!(
            buffer.offer(ev(limit + 2)),
            Offer::Ready(vec![ev(limit + 2)])
        );
    }

    #[test]
    fn overflow_at_the_total_limit() {
        let mut set: HoldBacks<u32, Ev> = HoldBacks::new();
        let per_case = HELD_PER_CASE_MAX as u64;
        let cases = u32::try_from(HELD_TOTAL_MAX / HELD_PER_CASE_MAX).unwrap();
        for case in 0..cases {
            for seq in 2..=per_case + 1 {
                assert_eq!(set.offer(case, ev(seq)), Offer::Held, "{case} {seq}");
            }
        }
        assert_eq!(set.held_total(), HELD_TOTAL_MAX);
        assert_eq!(set.offer(cases, ev(2)), Offer::Overflow);
        assert_eq!(set.offer(cases, ev(1)), Offer::Ready(vec![ev(1)]));
        match set.offer(0, ev(1)) {
            Offer::Ready(events) => assert_eq!(events.len(), HELD_PER_CASE_MAX + 1),
            other => panic!("expected Ready, got {other:?}"),
        }
        assert_eq!(set.held_total(), HELD_TOTAL_MAX - HELD_PER_CASE_MAX);
        assert_eq!(set.offer(cases, ev(3)), Offer::Held);
    }

    #[test]
    fn hold_backs_keep_cases_apart() {
        let mut set: HoldBacks<&str, Ev> = HoldBacks::new();
        let cases: &[(&str, u64, Want)] = &[
            ("a", 2, Want::Held),
            ("b", 1, Want::Ready(vec![1])),
            ("b", 2, Want::Ready(vec![2])),
            ("a", 2, Want::Duplicate),
            ("a", 1, Want::Ready(vec![1, 2])),
            ("c", 3, Want::Held),
        ];
        for (i, (key, seq, want)) in cases.iter().enumerate() {
            assert_eq!(seen(set.offer(key, ev(*seq))), *want, "#{i}");
        }
        let expect = [("a", 3, 0), ("b", 3, 0), ("c", 1, 1), ("never", 1, 0)];
        for (key, next, held) in expect {
            assert_eq!(set.next_expected(&key), next, "{key}");
            assert_eq!(set.held(&key), held, "{key}");
        }
        assert_eq!(set.held_total(), 1);
    }

    #[test]
    fn set_next_table() {
        // (held before, new position, released, next after, held after)
        type Case = (&'static [u64], u64, &'static [u64], u64, usize);
        let cases: &[Case] = &[
            (&[], 7, &[], 7, 0),
            (&[3, 4, 6], 3, &[3, 4], 5, 1),
            (&[3, 4, 6], 5, &[], 5, 1),
            (&[3, 4, 6], 6, &[6], 7, 0),
            (&[3, 4, 6], 10, &[], 10, 0),
            (&[3], 0, &[], 1, 1),
        ];
        for (held, next, released, next_after, held_after) in cases {
            let mut set: HoldBacks<u8, Ev> = HoldBacks::new();
            for seq in *held {
                assert_eq!(set.offer(0, ev(*seq)), Offer::Held);
            }
            let got: Vec<u64> = set.set_next(0, *next).iter().map(|e| e.seq).collect();
            assert_eq!(got, *released, "{held:?} -> {next}");
            assert_eq!(set.next_expected(&0), *next_after, "{held:?} -> {next}");
            assert_eq!(set.held(&0), *held_after, "{held:?} -> {next}");
            assert_eq!(set.held_total(), *held_after, "{held:?} -> {next}");
        }
    }

    /// 1..=n shuffled, with some events delivered more than once.
    fn deliveries() -> impl Strategy<Value = (u64, Vec<u64>)> {
        (1u64..60)
            .prop_flat_map(|n| {
                let seqs: Vec<u64> = (1..=n).collect();
                (
                    Just(n),
                    Just(seqs),
                    proptest::collection::vec(1..=n, 0..(n as usize * 2)),
                )
            })
            .prop_flat_map(|(n, mut seqs, dups)| {
                seqs.extend(dups);
                (Just(n), Just(seqs).prop_shuffle())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_order_with_duplicates_applies_each_once_in_order((n, order) in deliveries()) {
            let mut set: HoldBacks<u8, Ev> = HoldBacks::new();
            let mut applied = Vec::new();
            for seq in order {
                match set.offer(7, ev(seq)) {
                    Offer::Ready(events) => applied.extend(events.into_iter().map(|e| e.seq)),
                    Offer::Held | Offer::Duplicate => {}
                    other => prop_assert!(false, "unexpected {other:?} for {seq}"),
                }
            }
            let want: Vec<u64> = (1..=n).collect();
            prop_assert_eq!(applied, want);
            prop_assert_eq!(set.next_expected(&7), n + 1);
            prop_assert_eq!(set.held(&7), 0);
            prop_assert_eq!(set.held_total(), 0);
        }
    }
}

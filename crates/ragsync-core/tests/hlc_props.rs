//! Property tests of the hybrid logical clock: monotonic under any mix of local ticks and
//! remote observations with a physical clock that jumps back and forth, and a remote value far
//! in the future is refused without moving the clock.

use proptest::prelude::*;
use ragsync_core::{CoreError, Hlc, HlcClock};

const MAX_DRIFT_MS: u64 = 60_000;

#[derive(Clone, Debug)]
enum Step {
    Tick { physical_ms: u64 },
    Observe { remote: Hlc, physical_ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    let phys = 1_000_000u64..1_200_000;
    prop_oneof![
        phys.clone()
            .prop_map(|physical_ms| Step::Tick { physical_ms }),
        (phys, 900_000u64..1_400_000, any::<u16>()).prop_map(|(physical_ms, r, c)| Step::Observe {
            remote: Hlc::new(r, c),
            physical_ms
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ticks_exceed_everything_issued_or_accepted(steps in prop::collection::vec(step(), 1..200)) {
        let mut clock = HlcClock::new(MAX_DRIFT_MS);
        let mut high = Hlc::default();
        for s in steps {
            match s {
                Step::Tick { physical_ms } => {
                    let h = clock.tick(physical_ms);
                    prop_assert!(h > high, "tick {:?} not above {:?}", h, high);
                    prop_assert!(h.physical_ms() >= physical_ms.min(high.physical_ms()));
                    high = h;
                }
                Step::Observe { remote, physical_ms } => {
                    let before = clock.last();
                    match clock.observe(remote, physical_ms) {
                        Ok(()) => {
                            prop_assert!(remote.physical_ms() <= physical_ms + MAX_DRIFT_MS);
                            high = high.max(remote);
                        }
                        Err(CoreError::ClockDrift { .. }) => {
                            prop_assert!(remote.physical_ms() > physical_ms + MAX_DRIFT_MS);
                            prop_assert_eq!(clock.last(), before, "a refused value moved the clock");
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
            }
            prop_assert_eq!(clock.last(), high);
        }
    }

    #[test]
    fn far_future_remote_is_refused_and_clock_unchanged(
        now in 1_000_000u64..2_000_000,
        ahead in (MAX_DRIFT_MS + 1)..(1u64 << 40),
        counter in any::<u16>(),
    ) {
        let mut clock = HlcClock::new(MAX_DRIFT_MS);
        let issued = clock.tick(now);
        let remote = Hlc::new(now + ahead, counter);
        let err = clock.observe(remote, now).unwrap_err();
        prop_assert_eq!(err.code(), "clock_drift");
        prop_assert_eq!(clock.last(), issued);
        let next = clock.tick(now);
        prop_assert!(next < remote);
        prop_assert!(next > issued);
    }
}

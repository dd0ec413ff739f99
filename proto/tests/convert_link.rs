//! The replication stream on the wire: every frame variant round-trips (through the encoded
//! bytes too), malformed frames name their field, and random bytes never panic.

// Helpers outside #[test] functions may panic too: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use prost::Message;
use yimen_core::link::{
    Ack, Batch, Credit, Cursor, ERROR_DETAIL_BYTES_MAX, ErrorCode, ErrorFrame, EventId, Frame,
    Hello, VersionRange, Welcome, WireEvent,
};
use yimen_proto::convert::WireError;
use yimen_proto::pb;
use yimen_proto::pb::link_frame::Frame as F;

const CHILD: &str = "430421105204";
const PARENT: &str = "430421105000";

fn cursor(epoch: u64, position: u64, fill: u8) -> Cursor {
    Cursor {
        epoch,
        position,
        digest: [fill; 32],
    }
}

fn event(origin: &str, seq: u64, position: u64, bytes: &[u8]) -> WireEvent {
    WireEvent {
        id: EventId {
            origin: origin.to_owned(),
            epoch: 7 << 32,
            seq,
        },
        position,
        digest: [u8::try_from(position % 256).unwrap(); 32],
        bytes: bytes.to_vec(),
    }
}

fn hello(cursor: Option<Cursor>, refill: bool) -> Hello {
    Hello {
        versions: VersionRange { min: 1, max: 3 },
        node: CHILD.to_owned(),
        epoch: 5,
        clock_ms: 1_767_225_600_000,
        cursor,
        refill,
    }
}

fn welcome(cursor: Option<Cursor>, clock_offset_ms: i64) -> Welcome {
    Welcome {
        version: 1,
        epoch: u64::MAX,
        clock_offset_ms,
        cursor,
        log_position: 12,
    }
}

fn frames() -> Vec<Frame> {
    vec![
        Frame::Hello(hello(None, false)),
        Frame::Hello(hello(Some(cursor(9, 0, 0)), true)),
        Frame::Hello(hello(Some(cursor(9, 120, 0xab)), false)),
        Frame::Welcome(welcome(None, 0)),
        Frame::Welcome(welcome(Some(cursor(5, 3, 0xff)), -600_001)),
        Frame::Welcome(welcome(Some(cursor(1, u64::MAX, 1)), i64::MIN)),
        Frame::Batch(Batch {
            epoch: 3,
            after: 0,
            events: vec![],
        }),
        Frame::Batch(Batch {
            epoch: 3,
            after: 10,
            events: vec![
                event(CHILD, 1, 11, b"\x0a\x02hi"),
                event(PARENT, 4, 13, b""),
                event(CHILD, 2, 300, &[0u8; 1000]),
            ],
        }),
        Frame::Ack(Ack {
            epoch: 3,
            position: 0,
        }),
        Frame::Ack(Ack {
            epoch: 3,
            position: 300,
        }),
        Frame::Credit(Credit { limit_bytes: 0 }),
        Frame::Credit(Credit {
            limit_bytes: 8 << 20,
        }),
        Frame::Error(ErrorFrame::new(ErrorCode::Version, "no common version")),
        Frame::Error(ErrorFrame::new(ErrorCode::Protocol, "")),
        Frame::Error(ErrorFrame::new(ErrorCode::NewEpoch, "新纪元")),
        Frame::Error(ErrorFrame::new(
            ErrorCode::Timeout,
            "x".repeat(ERROR_DETAIL_BYTES_MAX),
        )),
    ]
}

#[test]
fn every_frame_round_trips() {
    for frame in frames() {
        let by_ref = pb::LinkFrame::from(&frame);
        let by_value = pb::LinkFrame::from(frame.clone());
        assert_eq!(by_ref, by_value, "{}", frame.kind());

        let back = Frame::try_from(by_value.clone()).unwrap();
        assert_eq!(back, frame);

        // Through the encoded bytes too, as the stream carries them.
        let decoded = pb::LinkFrame::decode(by_value.encode_to_vec().as_slice()).unwrap();
        assert_eq!(Frame::try_from(decoded).unwrap(), frame);
    }
}

#[test]
fn event_bytes_cross_byte_for_byte() {
    let stored = pb::Event {
        envelope: Some(pb::EventEnvelope {
            id: Some(pb::EventId {
                origin: CHILD.to_owned(),
                epoch: 1,
                seq: 1,
            }),
            ..Default::default()
        }),
        payload: vec![1, 2, 3],
    }
    .encode_to_vec();
    let frame = Frame::Batch(Batch {
        epoch: 1,
        after: 0,
        events: vec![event(CHILD, 1, 1, &stored)],
    });
    let wire = pb::LinkFrame::from(frame);
    let Some(F::Batch(batch)) = &wire.frame else {
        panic!("not a batch")
    };
    assert_eq!(batch.events[0].event, stored);
    let Frame::Batch(back) = Frame::try_from(wire).unwrap() else {
        panic!("not a batch")
    };
    assert_eq!(back.events[0].bytes, stored);
}

/// A valid frame of each kind, as wire, to break one field at a time.
fn wire(frame: Frame) -> pb::LinkFrame {
    frame.into()
}

fn wire_hello() -> pb::LinkHello {
    match wire(Frame::Hello(hello(Some(cursor(9, 1, 1)), false))).frame {
        Some(F::Hello(h)) => h,
        _ => unreachable!(),
    }
}

fn wire_welcome() -> pb::LinkWelcome {
    match wire(Frame::Welcome(welcome(Some(cursor(9, 1, 1)), 0))).frame {
        Some(F::Welcome(w)) => w,
        _ => unreachable!(),
    }
}

fn wire_batch() -> pb::LinkBatch {
    let events = (1..=5).map(|i| event(CHILD, i, i, b"e")).collect();
    match wire(Frame::Batch(Batch {
        epoch: 2,
        after: 0,
        events,
    }))
    .frame
    {
        Some(F::Batch(b)) => b,
        _ => unreachable!(),
    }
}

fn frame(f: F) -> pb::LinkFrame {
    pb::LinkFrame { frame: Some(f) }
}

fn with_hello(change: impl FnOnce(&mut pb::LinkHello)) -> pb::LinkFrame {
    let mut h = wire_hello();
    change(&mut h);
    frame(F::Hello(h))
}

fn with_welcome(change: impl FnOnce(&mut pb::LinkWelcome)) -> pb::LinkFrame {
    let mut w = wire_welcome();
    change(&mut w);
    frame(F::Welcome(w))
}

fn with_batch(change: impl FnOnce(&mut pb::LinkBatch)) -> pb::LinkFrame {
    let mut b = wire_batch();
    change(&mut b);
    frame(F::Batch(b))
}

fn with_event3(change: impl FnOnce(&mut pb::LinkEvent)) -> pb::LinkFrame {
    with_batch(|b| change(&mut b.events[3]))
}

#[derive(Debug, PartialEq)]
enum Kind {
    Missing,
    Invalid,
}

#[test]
fn malformed_frames_name_their_field() {
    use Kind::{Invalid, Missing};
    let cases: Vec<(pb::LinkFrame, Kind, &str)> = vec![
        (pb::LinkFrame { frame: None }, Missing, "frame"),
        // Hello
        (with_hello(|h| h.versions = None), Missing, "hello.versions"),
        (
            with_hello(|h| h.versions = Some(pb::LinkVersions { min: 3, max: 2 })),
            Invalid,
            "hello.versions",
        ),
        (
            with_hello(|h| h.versions = Some(pb::LinkVersions { min: 0, max: 2 })),
            Invalid,
            "hello.versions.min",
        ),
        (
            with_hello(|h| h.node = String::new()),
            Invalid,
            "hello.node",
        ),
        (
            with_hello(|h| h.node = "43042110520x".into()),
            Invalid,
            "hello.node",
        ),
        (
            with_hello(|h| h.node = "990421105204".into()),
            Invalid,
            "hello.node",
        ),
        (with_hello(|h| h.epoch = 0), Invalid, "hello.epoch"),
        (
            with_hello(|h| h.cursor.as_mut().unwrap().epoch = 0),
            Invalid,
            "hello.cursor.epoch",
        ),
        (
            with_hello(|h| h.cursor.as_mut().unwrap().digest = vec![0; 31]),
            Invalid,
            "hello.cursor.digest",
        ),
        (
            with_hello(|h| h.cursor.as_mut().unwrap().digest = vec![]),
            Invalid,
            "hello.cursor.digest",
        ),
        // Welcome
        (with_welcome(|w| w.version = 0), Invalid, "welcome.version"),
        (with_welcome(|w| w.epoch = 0), Invalid, "welcome.epoch"),
        (
            with_welcome(|w| w.cursor.as_mut().unwrap().digest = vec![0; 33]),
            Invalid,
            "welcome.cursor.digest",
        ),
        // Batch
        (with_batch(|b| b.epoch = 0), Invalid, "batch.epoch"),
        (
            with_event3(|e| e.digest = vec![7; 64]),
            Invalid,
            "batch.events[3].digest",
        ),
        (with_event3(|e| e.id = None), Missing, "batch.events[3].id"),
        (
            with_event3(|e| e.id.as_mut().unwrap().origin = "4304211052".into()),
            Invalid,
            "batch.events[3].id.origin",
        ),
        (
            with_event3(|e| e.id.as_mut().unwrap().epoch = 0),
            Invalid,
            "batch.events[3].id.epoch",
        ),
        (
            with_event3(|e| e.id.as_mut().unwrap().seq = 0),
            Invalid,
            "batch.events[3].id.seq",
        ),
        (
            with_event3(|e| e.position = 0),
            Invalid,
            "batch.events[3].position",
        ),
        (
            with_batch(|b| b.events[0].digest.clear()),
            Invalid,
            "batch.events[0].digest",
        ),
        // Ack
        (
            frame(F::Ack(pb::LinkAck {
                epoch: 0,
                position: 4,
            })),
            Invalid,
            "ack.epoch",
        ),
        // Error
        (
            frame(F::Error(pb::LinkError {
                code: 0,
                detail: String::new(),
            })),
            Invalid,
            "error.code",
        ),
        (
            frame(F::Error(pb::LinkError {
                code: 99,
                detail: String::new(),
            })),
            Invalid,
            "error.code",
        ),
        (
            frame(F::Error(pb::LinkError {
                code: pb::LinkErrorCode::Protocol as i32,
                detail: "x".repeat(ERROR_DETAIL_BYTES_MAX + 1),
            })),
            Invalid,
            "error.detail",
        ),
    ];
    for (w, kind, field) in cases {
        let err = Frame::try_from(w).unwrap_err();
        let got = match &err {
            WireError::Missing { .. } => Kind::Missing,
            WireError::Invalid { .. } => Kind::Invalid,
            WireError::Decode { .. } => panic!("{err}"),
        };
        assert_eq!((got, err.field()), (kind, field), "{err}");
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let err = Frame::try_from(with_event3(|e| e.digest = vec![7; 64])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch.events[3].digest: must be 32 bytes, got 64"
    );
    let err = Frame::try_from(with_hello(|h| {
        h.versions = Some(pb::LinkVersions { min: 3, max: 2 });
    }))
    .unwrap_err();
    assert_eq!(err.to_string(), "hello.versions: min 3 is above max 2");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(w) = pb::LinkFrame::decode(bytes.as_slice())
            && let Ok(frame) = Frame::try_from(w) {
                // Whatever converts is a frame that survives the wire unchanged.
                prop_assert_eq!(Frame::try_from(pb::LinkFrame::from(&frame)).unwrap(), frame);
            }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0..16usize,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = pb::LinkFrame::from(&frames()[which]).encode_to_vec();
        for (at, value) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
        }
        if let Ok(w) = pb::LinkFrame::decode(bytes.as_slice())
            && let Ok(frame) = Frame::try_from(w) {
                prop_assert_eq!(Frame::try_from(pb::LinkFrame::from(&frame)).unwrap(), frame);
            }
    }
}

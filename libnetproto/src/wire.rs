//! The Rust expansion of the wire table (`wire_table.rs`): opcodes, error codes, limits, the
//! C status numbers and event kinds, each declared once there.
//!
//! Trust boundary: none by itself; [`Opcode::from_u16`] and [`ErrorCode::from_u16`] are where
//! raw numbers from the network become enums (or `None`, which the callers turn into a fatal
//! error).

/// Expands the table in `wire_table.rs` (netproto-sys defines its own expansion of the same
/// file).
macro_rules! wire_table {
    (
        opcodes {
            $( $(#[$om:meta])* $op:ident = $opn:literal, $opname:literal, chunked: $chunked:literal; )*
        }
        error_codes {
            $( $(#[$em:meta])* $ec:ident = $ecn:literal, $ecname:literal,
               retryable: $retry:literal, reserved: $reserved:literal; )*
        }
        statuses {
            $( $st:ident = $stn:literal, $stdesc:literal; )*
        }
        event_kinds {
            $( $ek:ident = $ekn:literal, $ekdesc:literal; )*
        }
        timer_kinds {
            $( $tk:ident = $tkn:literal, $tkdesc:literal; )*
        }
        limits {
            $( $(#[$lm:meta])* $lim:ident : $lty:ty = $lval:expr; )*
        }
    ) => {
        /// Frame opcodes. Numbers are stable: never reuse or renumber.
        #[repr(u16)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Opcode {
            $( $(#[$om])* $op = $opn, )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: [Opcode; [$(stringify!($op)),*].len()] = [$(Opcode::$op),*];

            /// The opcode with wire number `v`, if there is one.
            pub fn from_u16(v: u16) -> Option<Opcode> {
                match v {
                    $( $opn => Some(Opcode::$op), )*
                    _ => None,
                }
            }

            /// The protocol name, e.g. "JOB_SUBMIT".
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$op => $opname, )*
                }
            }

            /// Whether frames of this opcode may carry the LAST flag (chunked streams).
            pub fn is_chunked(self) -> bool {
                match self {
                    $( Opcode::$op => $chunked, )*
                }
            }
        }

        /// Error codes carried in ERROR frames. Stable numbers, grouped by who is at fault.
        #[repr(u16)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$em])* $ec = $ecn, )*
        }

        impl ErrorCode {
            /// Every error code, reserved ones included, in table order.
            pub const ALL: [ErrorCode; [$(stringify!($ec)),*].len()] = [$(ErrorCode::$ec),*];

            /// The code with wire number `v`, if there is one (reserved numbers included: an
            /// older peer may still send them).
            pub fn from_u16(v: u16) -> Option<ErrorCode> {
                match v {
                    $( $ecn => Some(ErrorCode::$ec), )*
                    _ => None,
                }
            }

            /// The protocol name, e.g. "TOO_MANY_PIXELS".
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$ec => $ecname, )*
                }
            }

            /// The protocol name with a trailing NUL, for the C ABI.
            pub(crate) fn c_name(self) -> &'static str {
                match self {
                    $( ErrorCode::$ec => concat!($ecname, "\0"), )*
                }
            }

            /// Whether the same request may succeed if sent again later (to this or a
            /// restarted server).
            pub fn is_retryable(self) -> bool {
                match self {
                    $( ErrorCode::$ec => $retry, )*
                }
            }

            /// Whether the number is retired: no v1 peer sends it, and it is never reused.
            pub fn is_reserved(self) -> bool {
                match self {
                    $( ErrorCode::$ec => $reserved, )*
                }
            }
        }

        /// Protocol v1 size limits: the numbers every peer enforces before it allocates.
        pub(crate) mod limits {
            $( $(#[$lm])* pub const $lim: $lty = $lval; )*

            /// Every limit as (name, value), for the C header generator.
            #[cfg(test)]
            pub(crate) const ALL: &[(&str, &str, u64, &[&str])] = &[$((
                stringify!($lim),
                stringify!($lty),
                $lim as u64,
                &[$(stringify!($lm)),*],
            )),*];
        }

        /// `np_status` numbers: (name, number, NUL-terminated description).
        pub(crate) const STATUSES: &[(&str, u32, &str)] =
            &[$((stringify!($st), $stn, concat!($stdesc, "\0"))),*];

        /// Error codes as (name, number, reserved), for the C header generator.
        #[cfg(test)]
        pub(crate) const ERROR_CODES: &[(&str, u16, bool)] = &[$(($ecname, $ecn, $reserved)),*];

        /// `np_event_kind` numbers: (name, number, description).
        #[cfg(test)]
        pub(crate) const EVENT_KINDS: &[(&str, u32, &str)] = &[$((stringify!($ek), $ekn, $ekdesc)),*];

        /// `np_timer` numbers: (name, number, description).
        #[cfg(test)]
        pub(crate) const TIMER_KINDS: &[(&str, u32, &str)] = &[$((stringify!($tk), $tkn, $tkdesc)),*];
    };
}

include!("wire_table.rs");

/// The description of C status number `n`, NUL-terminated; `None` for an unknown number.
pub(crate) fn status_description(n: u32) -> Option<&'static str> {
    STATUSES
        .iter()
        .find(|(_, v, _)| *v == n)
        .map(|(_, _, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn opcode_numbers_round_trip_and_are_unique() {
        let mut seen = HashSet::new();
        for op in Opcode::ALL {
            assert!(seen.insert(op as u16), "duplicate opcode {op:?}");
            assert_eq!(Opcode::from_u16(op as u16), Some(op));
        }
        assert_eq!(Opcode::from_u16(0), None);
        assert_eq!(Opcode::from_u16(0xffff), None);
    }

    #[test]
    fn error_codes_round_trip_and_are_unique() {
        let mut seen = HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c as u16));
            assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
            assert!(!c.name().is_empty());
            assert_eq!(c.c_name(), format!("{}\0", c.name()));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert!(ErrorCode::Timeout.is_retryable() && !ErrorCode::BadSpec.is_retryable());
        // Retired numbers stay listed (an older peer may send them) but are never sent.
        let reserved: Vec<u16> = ErrorCode::ALL
            .iter()
            .filter(|c| c.is_reserved())
            .map(|c| *c as u16)
            .collect();
        assert_eq!(reserved, [103, 104, 401]);
    }

    #[test]
    fn status_and_event_numbers_are_unique() {
        let mut seen = HashSet::new();
        for (name, n, desc) in STATUSES {
            assert!(seen.insert(*n), "{name}");
            assert!(desc.ends_with('\0') && desc.len() > 1, "{name}");
            assert_eq!(status_description(*n), Some(*desc));
        }
        assert_eq!(status_description(77_777), None);
        let mut seen = HashSet::new();
        for (name, n, _) in EVENT_KINDS {
            assert!(seen.insert(*n), "{name}");
        }
    }
}

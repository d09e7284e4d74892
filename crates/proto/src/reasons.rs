//! `drop_reasons!`: declares a closed enum of named drop reasons.
//!
//! The engine and the host simulator each keep their own list (their drops differ),
//! but both need the same shape: a `#[repr(u8)]` enum usable as a counter index, `ALL`
//! in counter order, a stable snake_case `name()` for metrics and printed counters, and
//! `describe()` for operators. One macro keeps the two from drifting apart.

/// Declares `pub enum DropReason` with `ALL`, `name()`, `describe()` and `Display`.
#[macro_export]
macro_rules! drop_reasons {
    ($(#[$meta:meta])* $($variant:ident => $name:literal, $doc:literal;)*) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The stable snake_case name used in counters and metrics.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// What the reason means, for operators.
            pub fn describe(self) -> &'static str {
                match self { $(DropReason::$variant => $doc,)* }
            }
        }

        impl ::core::fmt::Display for DropReason {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

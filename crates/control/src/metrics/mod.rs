//! Prometheus metrics: the LB's and the host simulator's counters, and the control
//! plane's statistics, rendered in the text exposition format on `/metrics`.
//!
//! Workers count into their own plain counters; each publishes a copy into its own
//! slot every 100 ms between batches (`publish`); a scrape sums the copies and labels
//! them from the policy snapshot (`lb`, `host`), written by hand (`text`) and served
//! by hyper on a thread of its own (`http`). The control plane reports through
//! [`ControlStats`]. Nothing here runs on the packet path, and the data plane never
//! waits on it: a scrape that holds a slot only delays that worker's next copy.
//! Metric names and labels are listed in docs/metrics.md.

pub mod control;
pub mod http;
pub mod lb;
pub use nvlb_io::publish;
pub mod text;

pub use control::ControlStats;
pub use lb::{LbMetrics, dip_label};
pub use publish::{Publisher, WorkerSlot, WorkerStats};

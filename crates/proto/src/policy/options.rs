//! What a policy is compiled for, beyond its text.
//!
//! The same text must always compile to the same snapshot for the same options, so
//! everything that shapes the result and is not in the file is an argument here,
//! never process-wide state: which instance of a scale-out deployment runs it
//! (`nvlb run --instance`), and the Maglev table size (only the fuzz harnesses ask
//! for a small one, so that an input costs microseconds instead of a 65 537-slot
//! build per pool).

use crate::maglev::{self, MaglevError};

/// The options of [`Snapshot::compile`](super::Snapshot::compile). The default is what
/// `nvlb check` and a single `nvlb run` use: no instance, 65 537-slot tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    instance: Option<String>,
    table_size: u32,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            instance: None,
            table_size: maglev::DEFAULT_TABLE_SIZE,
        }
    }
}

impl CompileOptions {
    /// Compiles the view of the `[[balancer.instance]]` named `name`: its own PAs and
    /// source-NAT CAs (a policy that declares no such instance is refused).
    pub fn for_instance(mut self, name: &str) -> CompileOptions {
        self.instance = Some(name.to_string());
        self
    }

    /// Builds every pool's Maglev table with `size` slots. Refuses a size that
    /// `Maglev::build` would refuse (not prime, above the bound), so that the error
    /// comes where the size is chosen, not from every pool.
    pub fn with_table_size(mut self, size: u32) -> Result<CompileOptions, MaglevError> {
        maglev::check_table_size(size)?;
        self.table_size = size;
        Ok(self)
    }

    /// The instance whose view is compiled, if any.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// The size of every pool's Maglev table.
    pub fn table_size(&self) -> u32 {
        self.table_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_size_is_checked_where_it_is_chosen() {
        let o = CompileOptions::default();
        assert_eq!(o.table_size(), maglev::DEFAULT_TABLE_SIZE);
        assert_eq!(o.instance(), None);
        assert!(matches!(
            o.clone().with_table_size(1000),
            Err(MaglevError::NotPrime(1000))
        ));
        assert!(
            o.clone()
                .with_table_size(maglev::MAX_TABLE_SIZE + 1)
                .is_err()
        );
        assert_eq!(o.with_table_size(1021).unwrap().table_size(), 1021);
    }
}

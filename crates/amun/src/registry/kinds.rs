//! The registry's row kinds as types: what a version is, how a request was
//! absorbed, where a retrain ran, what a chain record records, how requests
//! name samples. Each is stored (and hashed, and written to JSON) as the
//! same lower-case word as before; the words are converted at the SQL and
//! serde boundaries only, and an unknown word read from the database is an
//! error that names the row it is in.
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// A word in the database that names no kind of its column.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{got}' (expected {expected})")]
pub struct UnknownKind {
    what: &'static str,
    got: String,
    expected: String,
}

/// A kind stored as one of a fixed set of words.
macro_rules! kind {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $var:ident = $word:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $word)] $var,)+
        }

        impl $name {
            /// Every kind.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The word stored for it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                match s {
                    $($word => Ok($name::$var),)+
                    _ => Err(UnknownKind {
                        what: $what,
                        got: s.into(),
                        expected: [$($word),+].join(", "),
                    }),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e: UnknownKind| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

kind!(
    /// What a version is (`versions.kind`).
    VersionKind, "version kind", {
        /// The model the registry was made from.
        Trained = "trained",
        /// Unlearned from its parent by an apply.
        Unlearned = "unlearned",
        /// An exact retrain: a new root.
        Retrained = "retrained",
    }
);

kind!(
    /// How a version absorbed a request (`absorptions.how`).
    How, "absorption", {
        /// Every sample was already forgotten.
        Covered = "covered",
        /// Excluded by an exact retrain.
        Retrained = "retrained",
        /// Unlearned by the version's run.
        Unlearned = "unlearned",
    }
);

kind!(
    /// Where a retrain runs (`retrains.executor`).
    Executor, "retrain executor", {
        Local = "local",
        Slurm = "slurm",
    }
);

kind!(
    /// What a chain record records (`chain.kind`). In the words' order, so
    /// records sort as they did when the kinds were text.
    RecordKind, "chain record kind", {
        Absorption = "absorption",
        Anchor = "anchor",
        Graph = "graph",
        Policy = "policy",
        Registry = "registry",
        Request = "request",
        Retrain = "retrain",
        Version = "version",
    }
);

kind!(
    /// The command whose commit an anchor line records (`anchor.log`'s
    /// `kind`).
    Committer, "anchor line's command", {
        Add = "add",
        Anchor = "anchor",
        Apply = "apply",
        Create = "create",
        Graph = "graph",
        Policy = "policy",
        Retrain = "retrain",
    }
);

kind!(
    /// How requests name training samples (`registry.sample_names`).
    SampleNames, "sample naming", {
        /// By index (registry datasets, CIFAR-10 and IDX folders).
        Index = "index",
        /// By path (image folders).
        Path = "path",
    }
);

kind!(
    /// Where a request stands (derived from the absorptions, never stored).
    RequestState, "request status", {
        Absorbed = "absorbed",
        Pending = "pending",
    }
);

/// Column `col` of `row` as a kind. An unknown word names the row it was
/// read from: `what` and the row's id (its first column, when that is an
/// integer), such as `version 3`.
pub(crate) fn kind_in<K: FromSql>(
    row: &rusqlite::Row<'_>,
    col: usize,
    what: &str,
) -> rusqlite::Result<K> {
    row.get(col).map_err(|e| match e {
        rusqlite::Error::FromSqlConversionFailure(i, t, inner) => {
            let name = match row.get::<_, i64>(0) {
                Ok(id) => format!("{what} {id}"),
                Err(_) => what.to_string(),
            };
            rusqlite::Error::FromSqlConversionFailure(i, t, format!("{name}: {inner}").into())
        }
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// Each kind through an SQLite column and back, and through serde, as
    /// its word; an unknown word read back names the row.
    fn round_trip<K>(all: &[K])
    where
        K: ToSql + FromSql + Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        K: std::fmt::Display + Copy,
    {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, kind TEXT NOT NULL)")
            .unwrap();
        for (i, k) in (0_i64..).zip(all) {
            c.execute(
                "INSERT INTO t (id, kind) VALUES (?1, ?2)",
                rusqlite::params![i, k],
            )
            .unwrap();
            let text: String = c
                .query_row("SELECT kind FROM t WHERE id = ?1", [i], |r| r.get(0))
                .unwrap();
            assert_eq!(text, k.to_string());
            let back: K = c
                .query_row("SELECT id, kind FROM t WHERE id = ?1", [i], |r| {
                    kind_in(r, 1, "t")
                })
                .unwrap();
            assert_eq!(back, *k);
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<K>(&format!("\"{k}\"")).unwrap(), *k);
        }
        c.execute("INSERT INTO t (id, kind) VALUES (99, 'Trained ')", [])
            .unwrap();
        let e = c
            .query_row("SELECT id, kind FROM t WHERE id = 99", [], |r| {
                kind_in::<K>(r, 1, "t")
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t 99: unknown") && e.contains("'Trained '"),
            "{e}"
        );
    }

    #[test]
    fn kinds_are_stored_as_their_words_and_unknown_words_name_the_row() {
        round_trip(VersionKind::ALL);
        round_trip(How::ALL);
        round_trip(Executor::ALL);
        round_trip(RecordKind::ALL);
        round_trip(SampleNames::ALL);
        round_trip(RequestState::ALL);
        let words = ["trained", "unlearned", "retrained"];
        let got: Vec<&str> = VersionKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(got, words);
    }

    #[test]
    fn record_kinds_sort_as_their_words() {
        let mut words: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
        words.sort_unstable();
        let sorted: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(words, sorted);
    }
}

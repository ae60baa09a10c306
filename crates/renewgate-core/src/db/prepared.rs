//! Keeping prepared the statements diesel prepares afresh on every run.
//!
//! diesel marks every UPDATE (its changeset may skip `None` fields, so one Rust type can stand
//! for several SQL texts), every `IN` list and every raw SQL query as unsafe to cache, and
//! prepares them again each time they run: on SQLite a `sqlite3_prepare` per statement, on
//! PostgreSQL a parse and plan on the server. A renewal runs several such statements.
//!
//! `Prepared(query)` declares the statement cacheable by its text: it has no static query id,
//! so diesel's statement cache keys it by the SQL it renders (and the bind types), and two
//! statements of one Rust type that render different SQL get two entries. That is exactly the
//! condition diesel's refusal guards against, so it is only safe where the text is stable, as it
//! is for the hot-path statements wrapped here.
//!
//! A wrapped statement must run as a load (`load`, `get_result`, `first`; a write ends in
//! `RETURNING` and runs with [`Prepared::write`]). diesel's `execute` hands the statement cache a
//! reference to the statement, and a reference answers "may I be cached?" by walking the
//! statement inside, which ignores this wrapper: an `execute`d `Prepared` is prepared afresh
//! every time (the test below holds both facts).
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// A statement to keep prepared, keyed by its SQL text (see the module comment).
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(pub Q);

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // No static id: the cache key is the rendered SQL, never the Rust type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

impl<Q> Prepared<Q> {
    /// Runs a write that ends in `RETURNING` one `BigInt` column per row, kept prepared, and
    /// returns how many rows it wrote (what `execute` returns; see the module comment).
    pub fn write<'q, C>(self, conn: &mut C) -> QueryResult<usize>
    where
        C: diesel::Connection,
        Self: diesel::query_dsl::LoadQuery<'q, C, i64>,
    {
        Ok(RunQueryDsl::load::<i64>(self, conn)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::Prepared;
    use crate::db::schema::jobs;
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use diesel::prelude::*;
    use std::sync::{Arc, Mutex};

    /// Counts the statements a connection prepares to keep.
    #[derive(Clone, Default)]
    struct CachedStatements(Arc<Mutex<usize>>);
    impl Instrumentation for CachedStatements {
        fn on_connection_event(&mut self, e: InstrumentationEvent<'_>) {
            if let InstrumentationEvent::CacheQuery { .. } = e {
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            }
        }
    }

    #[test]
    fn a_write_is_kept_prepared_when_it_runs_as_a_load_and_not_when_executed() {
        let mut conn = crate::db::establish(":memory:").expect("in-memory SQLite");
        crate::db::run_migrations(&mut conn).expect("migrations");
        let crate::db::DbConn::Sqlite(c) = &mut conn else { unreachable!("an in-memory URL is SQLite") };
        let cached = CachedStatements::default();
        c.set_instrumentation(cached.clone());
        let count = || *cached.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in 0..4 {
            Prepared(diesel::update(jobs::table.find(id)).set(jobs::attempts.eq(3))).execute(c).expect("update");
        }
        assert_eq!(count(), 0, "an executed Prepared is never cached (diesel passes it by reference)");
        for id in 0..4 {
            let n = Prepared(diesel::update(jobs::table.find(id)).set(jobs::attempts.eq(3)).returning(jobs::id))
                .write(c)
                .expect("update");
            assert_eq!(n, 0, "no job has this id");
        }
        assert_eq!(count(), 1, "one statement prepared once for four runs");
    }
}

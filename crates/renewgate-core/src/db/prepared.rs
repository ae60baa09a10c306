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

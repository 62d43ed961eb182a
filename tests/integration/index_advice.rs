//! The index advisor end to end on real PostgreSQL: a workload makes one
//! statement dominate during the sampling window, `ward run` (offline
//! planner, headless) reads it from pg_stat_statements, and a second
//! operator approves the index it proposes with `ward approve`. Graded by
//! the database afterwards: the index exists, is valid, and the planner
//! uses it (pg_stat_user_indexes and EXPLAIN), or no index was built where
//! none should be.

use serde_json::Value;

use crate::harness::TempRepo;
use crate::planner_e2e::{
    Traffic, approve_when_proposed, audit_verifies, executed, finish, start_run, step,
};

/// 200,000 orders over 5,000 customers: a lookup by customer reads 40
/// rows, through a full scan while there is no index. Analyzed by
/// [`load_orders`] in a session of its own, after the loading one has
/// ended: a backend reports its row counts when it goes idle, which may be
/// after an ANALYZE in the same session, and the table would look stale.
const ORDERS: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id int NOT NULL, \
       email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), total_cents int NOT NULL); \
     INSERT INTO public.orders SELECT g, g % 5000, 'user' || g || '@example.com', \
       now() - g * interval '1 minute', g % 977 FROM generate_series(1, 200000) g;";

/// Loads [`ORDERS`] plus `extra` DDL, then analyzes.
fn load_orders(pg: &crate::pg::PgServer, url: &str, extra: &str) {
    pg.psql(url, &format!("{ORDERS} {extra}"));
    pg.psql(url, "ANALYZE public.orders");
}

const LOOKUP: &str = "SELECT count(*) FROM public.orders WHERE customer_id = 42";

fn index_state(pg: &crate::pg::PgServer, url: &str, name: &str) -> String {
    pg.psql(
        url,
        &format!(
            "SELECT i.indisvalid, i.indisready, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = '{name}'"
        ),
    )
}

fn user_indexes(pg: &crate::pg::PgServer, url: &str) -> String {
    pg.psql(
        url,
        "SELECT string_agg(indexrelname, ',' ORDER BY indexrelname) FROM pg_stat_user_indexes \
         WHERE relname = 'orders'",
    )
}

#[test]
fn a_slow_queries_alert_from_a_missing_index_ends_with_the_advised_index_built_valid_and_used() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("advisor_slow_queries");
    load_orders(pg, &url, "");
    // The order-history page: the same lookup over and over, each a full
    // scan of 200,000 rows, while ward samples.
    let page = Traffic::start(pg, &url, LOOKUP);
    let repo = TempRepo::copy_of_repo();
    // Nobody names a table, column or index.
    let mut session = start_run(&repo, "pg-slow-queries", &url, &["sample_seconds=2"]);
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "create_index");
    assert_eq!(proposed["data"]["inputs"]["index_table"], "public.orders");
    assert_eq!(proposed["data"]["inputs"]["index_columns"], "customer_id");
    assert_eq!(
        proposed["data"]["inputs"]["index_name"],
        "orders_customer_id_idx"
    );
    let sql = proposed["data"]["sql"].as_str().unwrap_or("");
    assert!(
        sql.contains(
            r#"CREATE INDEX CONCURRENTLY "orders_customer_id_idx" ON "public"."orders" ("customer_id")"#
        ),
        "{proposed:#}"
    );
    let report = finish(session);
    assert!(page.stop() > 0);
    assert_eq!(report["outcome"], "concluded", "{report:#}");
    assert_eq!(step(&report, "create_index")["verified"], true);
    let ran = executed(&report);
    let at = ran
        .iter()
        .position(|s| *s == "create_index")
        .expect("create_index ran");
    assert_eq!(
        ran[at..],
        [
            "create_index",
            "check_index_used",
            "top_statements",
            "stale_stats",
            "index_advice"
        ]
    );
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains(
            "The missing index is built, valid and used: CREATE INDEX CONCURRENTLY orders_customer_id_idx ON public.orders (customer_id), for SELECT count(*) FROM public.orders WHERE customer_id = $1"
        ) && conclusion.contains("which read public.orders by ")
            && conclusion.contains(" ms over ")
            && conclusion.contains(" → "),
        "{conclusion}"
    );

    // Graded by the database: valid, ready, scanned, and the plan uses it.
    assert_eq!(
        index_state(pg, &url, "orders_customer_id_idx"),
        "t|t|CREATE INDEX orders_customer_id_idx ON public.orders USING btree (customer_id)"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT idx_scan > 0 FROM pg_stat_user_indexes WHERE indexrelname = 'orders_customer_id_idx'"
        ),
        "t"
    );
    let plan = pg.psql(&url, &format!("EXPLAIN (COSTS OFF) {LOOKUP}"));
    assert!(plan.contains("orders_customer_id_idx"), "{plan}");
    audit_verifies(&repo, &id);
}

#[test]
fn the_missing_index_runbook_proposes_the_advised_column_and_name_without_input() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("advisor_missing_index");
    load_orders(
        pg,
        &url,
        "CREATE INDEX idx_orders_created_at ON public.orders (created_at);",
    );
    let page = Traffic::start(pg, &url, LOOKUP);
    let repo = TempRepo::copy_of_repo();
    // No --input column= or index_name=: both come from index_advice.
    let mut session = start_run(
        &repo,
        "pg-missing-index",
        &url,
        &["min_seq_tup_read=100000", "sample_seconds=2"],
    );
    let (id, proposed) = approve_when_proposed(&repo, &mut session, "create_index");
    assert_eq!(proposed["data"]["inputs"]["table"], "public.orders");
    assert_eq!(proposed["data"]["inputs"]["column"], "customer_id");
    // The table's own indexes are named idx_<table>_<column>.
    assert_eq!(
        proposed["data"]["inputs"]["index_name"],
        "idx_orders_customer_id"
    );
    let rationale = proposed["data"]["rationale"].as_str().unwrap_or("");
    assert!(
        rationale.contains("column = \"customer_id\" from index_advice.columns"),
        "{rationale}"
    );
    let report = finish(session);
    assert!(page.stop() > 0);
    assert_eq!(report["outcome"], "concluded", "{report:#}");
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains("The incident has cleared")
            && conclusion
                .contains("for SELECT count(*) FROM public.orders WHERE customer_id = $1 (")
            && conclusion
                .contains("The index the advisor proposed on (customer_id) is built and valid"),
        "{conclusion}"
    );
    assert_eq!(
        index_state(pg, &url, "idx_orders_customer_id"),
        "t|t|CREATE INDEX idx_orders_customer_id ON public.orders USING btree (customer_id)"
    );
    let plan = pg.psql(&url, &format!("EXPLAIN (COSTS OFF) {LOOKUP}"));
    assert!(plan.contains("idx_orders_customer_id"), "{plan}");
    audit_verifies(&repo, &id);
}

/// A diagnosis-only pg-slow-queries session over `workload`: its report.
fn diagnose(pg: &'static crate::pg::PgServer, url: &str, workload: &str) -> Value {
    let traffic = Traffic::start(pg, url, workload);
    let repo = TempRepo::copy_of_repo();
    let session = start_run(&repo, "pg-slow-queries", url, &["sample_seconds=2"]);
    let report = finish(session);
    assert!(traffic.stop() > 0);
    report
}

#[test]
fn an_index_led_by_the_filtered_column_already_serves_it_and_nothing_is_built() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("advisor_prefix");
    load_orders(
        pg,
        &url,
        "CREATE INDEX orders_customer_id_created_at_idx ON public.orders (customer_id, created_at);",
    );
    let report = diagnose(
        pg,
        &url,
        "SELECT count(*) FROM public.orders WHERE customer_id = 42 AND total_cents > 0",
    );
    assert!(!executed(&report).contains(&"create_index"), "{report:#}");
    assert_eq!(step(&report, "index_advice")["status"], "done");
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains(
            "It is not a missing index: public.orders is already indexed by orders_customer_id_created_at_idx on (customer_id)"
        ),
        "{conclusion}"
    );
    assert_eq!(
        user_indexes(pg, &url),
        "orders_customer_id_created_at_idx,orders_pkey"
    );
}

#[test]
fn a_filter_on_lower_of_a_column_gets_no_plain_column_index() {
    let Some(pg) = crate::pg::server() else {
        return;
    };
    let url = pg.fresh_db("advisor_expression");
    load_orders(pg, &url, "");
    let report = diagnose(
        pg,
        &url,
        "SELECT count(*) FROM public.orders WHERE lower(email) = 'user42@example.com'",
    );
    assert!(!executed(&report).contains(&"create_index"), "{report:#}");
    assert_eq!(step(&report, "index_advice")["status"], "done");
    let conclusion = report["conclusion"].as_str().unwrap_or("");
    assert!(
        conclusion.contains("No plain-column index is advised for public.orders")
            && conclusion.contains("the statement filters on the expression lower(email)"),
        "{conclusion}"
    );
    assert_eq!(user_indexes(pg, &url), "orders_pkey");
}

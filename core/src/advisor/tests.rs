use super::*;

fn no_columns(_: &str) -> Option<Vec<String>> {
    None
}

fn uses(sql: &str) -> Vec<TableUse> {
    extract(sql, "public", &no_columns).expect("parses")
}

fn use_of(sql: &str, table: &str) -> TableUse {
    uses(sql)
        .into_iter()
        .find(|u| u.table == table)
        .unwrap_or_else(|| panic!("{table} not used in {sql}"))
}

fn v(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

fn orders(indexes: Vec<IndexInfo>) -> TableInfo {
    TableInfo {
        table: "public.orders".into(),
        live_rows: 200_000.0,
        indexes,
        columns: [
            "id",
            "customer_id",
            "status",
            "created_at",
            "email",
            "total",
        ]
        .iter()
        .map(|c| ColumnStats {
            name: c.to_string(),
            n_distinct: Some(match *c {
                "id" => -1.0,
                "customer_id" => 2000.0,
                "status" => 3.0,
                "created_at" => -0.9,
                _ => 500.0,
            }),
            correlation: Some(0.01),
            null_frac: Some(0.0),
        })
        .collect(),
    }
}

fn index(name: &str, cols: &[&str]) -> IndexInfo {
    IndexInfo {
        name: name.into(),
        columns: cols.iter().map(|c| Some(c.to_string())).collect(),
        predicate: None,
        valid: true,
        method: "btree".into(),
        definition: format!(
            "CREATE INDEX {name} ON public.orders USING btree ({})",
            cols.join(", ")
        ),
    }
}

fn pkey() -> IndexInfo {
    index("orders_pkey", &["id"])
}

#[test]
fn an_equality_on_a_parameter_is_an_equality_column() {
    let u = use_of(
        "SELECT * FROM public.orders WHERE customer_id = $1",
        "public.orders",
    );
    assert_eq!(
        u,
        TableUse {
            table: "public.orders".into(),
            equality: v(&["customer_id"]),
            ..TableUse::default()
        }
    );
}

#[test]
fn an_unqualified_table_gets_the_default_schema_and_a_mirrored_comparison_counts() {
    let u = use_of(
        "SELECT count(*) FROM orders WHERE $1 = customer_id",
        "public.orders",
    );
    assert_eq!(u.equality, v(&["customer_id"]));
}

#[test]
fn aliases_are_resolved_and_join_columns_go_to_each_side() {
    let all = uses(
        "SELECT o.id FROM public.orders o JOIN shop.customers AS c ON c.id = o.customer_id WHERE c.email = $1 AND o.created_at >= $2",
    );
    let o = all
        .iter()
        .find(|u| u.table == "public.orders")
        .expect("orders");
    let c = all
        .iter()
        .find(|u| u.table == "shop.customers")
        .expect("customers");
    assert_eq!(o.join, v(&["customer_id"]));
    assert_eq!(o.range, v(&["created_at"]));
    assert_eq!(c.join, v(&["id"]));
    assert_eq!(c.equality, v(&["email"]));
}

#[test]
fn a_join_in_the_where_clause_counts_like_one_in_on() {
    let all =
        uses("SELECT 1 FROM orders o, order_items i WHERE i.order_id = o.id AND o.status = $1");
    let i = all
        .iter()
        .find(|u| u.table == "public.order_items")
        .expect("items");
    assert_eq!(i.join, v(&["order_id"]));
}

#[test]
fn in_lists_any_and_is_null_are_equalities_between_is_a_range() {
    let u = use_of(
        "SELECT * FROM orders WHERE status IN ($1, $2) AND customer_id = ANY($3) AND shipped_at IS NULL AND total BETWEEN $4 AND $5",
        "public.orders",
    );
    assert_eq!(u.equality, v(&["status", "customer_id", "shipped_at"]));
    assert_eq!(u.range, v(&["total"]));
}

#[test]
fn predicates_under_or_or_not_give_no_column() {
    let u = uses("SELECT * FROM orders WHERE customer_id = $1 OR email = $2");
    assert!(u.iter().all(|t| t.equality.is_empty()), "{u:?}");
    let u = uses("SELECT * FROM orders WHERE NOT (customer_id = $1)");
    assert!(u.iter().all(|t| t.equality.is_empty()), "{u:?}");
}

#[test]
fn a_function_or_a_cast_on_the_column_is_an_expression_not_a_column() {
    let u = use_of(
        "SELECT * FROM public.users WHERE lower(email) = $1",
        "public.users",
    );
    assert_eq!(u.equality, Vec::<String>::new());
    assert_eq!(u.expressions, v(&["lower(email)"]));
    let u = use_of(
        "SELECT * FROM orders WHERE created_at::date = $1",
        "public.orders",
    );
    assert_eq!(u.expressions, v(&["created_at::date"]));
}

#[test]
fn a_cast_on_the_parameter_side_keeps_the_plain_column() {
    let u = use_of(
        "SELECT * FROM orders WHERE customer_id = $1::bigint AND created_at > now() - $2::interval",
        "public.orders",
    );
    assert_eq!(u.equality, v(&["customer_id"]));
    assert_eq!(u.range, v(&["created_at"]));
}

#[test]
fn like_is_a_pattern_not_a_range() {
    let u = use_of("SELECT * FROM orders WHERE email LIKE $1", "public.orders");
    assert_eq!(u.pattern, v(&["email"]));
    assert!(u.range.is_empty() && u.equality.is_empty());
}

#[test]
fn order_by_with_limit_on_one_table_is_recorded() {
    let u = use_of(
        "SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2",
        "public.orders",
    );
    assert_eq!(u.order_by, v(&["created_at"]));
    let u = use_of("SELECT * FROM orders ORDER BY created_at", "public.orders");
    assert!(u.order_by.is_empty(), "no LIMIT, no order column: {u:?}");
}

#[test]
fn subqueries_in_where_and_from_and_ctes_are_walked() {
    let all = uses(
        "WITH recent AS (SELECT id FROM orders WHERE created_at > $1) \
         SELECT * FROM customers c WHERE c.id IN (SELECT customer_id FROM orders WHERE status = $2) \
           AND EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = c.id AND p.state = $3) \
           AND c.region_id = (SELECT id FROM regions WHERE code = $4)",
    );
    let orders: Vec<&TableUse> = all.iter().filter(|u| u.table == "public.orders").collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].range, v(&["created_at"]));
    assert_eq!(orders[0].equality, v(&["status"]));
    let p = all
        .iter()
        .find(|u| u.table == "public.payments")
        .expect("payments");
    // c.id is the outer query's: a value for the subquery.
    assert_eq!(p.equality, v(&["customer_id", "state"]));
    let c = all
        .iter()
        .find(|u| u.table == "public.customers")
        .expect("customers");
    assert_eq!(c.equality, v(&["id", "region_id"]));
    let r = all
        .iter()
        .find(|u| u.table == "public.regions")
        .expect("regions");
    assert_eq!(r.equality, v(&["code"]));
    assert!(
        all.iter().all(|u| u.table != "public.recent"),
        "a CTE is not a table"
    );
}

#[test]
fn update_and_delete_predicates_count() {
    let u = use_of(
        "UPDATE orders SET status = $1 WHERE customer_id = $2",
        "public.orders",
    );
    assert_eq!(u.equality, v(&["customer_id"]));
    let u = use_of(
        "DELETE FROM public.sessions WHERE expires_at < $1",
        "public.sessions",
    );
    assert_eq!(u.range, v(&["expires_at"]));
}

#[test]
fn insert_select_reads_the_select_s_predicates_not_the_target() {
    let all = uses("INSERT INTO archive.orders SELECT * FROM public.orders WHERE created_at < $1");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].table, "public.orders");
    assert_eq!(all[0].range, v(&["created_at"]));
}

#[test]
fn an_unqualified_column_among_several_tables_is_placed_by_the_columns_they_have() {
    let cols = |t: &str| match t {
        "public.orders" => Some(v(&["id", "customer_id"])),
        "public.customers" => Some(v(&["id", "email"])),
        _ => None,
    };
    let all = extract(
        "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE email = $1",
        "public",
        &cols,
    )
    .expect("parses");
    let c = all
        .iter()
        .find(|u| u.table == "public.customers")
        .expect("customers");
    assert_eq!(c.equality, v(&["email"]));
    // Without column lists it is not guessed.
    let all =
        uses("SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE email = $1");
    assert!(all.iter().all(|u| u.equality.is_empty()), "{all:?}");
}

#[test]
fn a_statement_that_does_not_parse_says_so() {
    let err = extract("SELECT * FROM WHERE", "public", &no_columns).expect_err("bad SQL");
    assert!(matches!(err, ExtractError::Parse(_)), "{err:?}");
}

#[test]
fn a_missing_index_on_the_equality_column_is_proposed_with_the_default_pattern() {
    let u = use_of(
        "SELECT * FROM public.orders WHERE customer_id = $1",
        "public.orders",
    );
    assert_eq!(
        advise(&u, &orders(vec![pkey()])),
        Advice::Create(Proposal {
            table: "public.orders".into(),
            columns: v(&["customer_id"]),
            name: "orders_customer_id_idx".into(),
            sql: "CREATE INDEX CONCURRENTLY orders_customer_id_idx ON public.orders (customer_id)"
                .into(),
        })
    );
}

#[test]
fn equality_columns_come_first_most_selective_first_then_one_range_column() {
    let u = use_of(
        "SELECT * FROM orders WHERE created_at > $1 AND total < $2 AND status = $3 AND customer_id = $4",
        "public.orders",
    );
    let Advice::Create(p) = advise(&u, &orders(vec![pkey()])) else {
        panic!("expected a proposal")
    };
    assert_eq!(p.columns, v(&["customer_id", "status", "created_at"]));
    assert_eq!(p.name, "orders_customer_id_status_created_at_idx");
}

#[test]
fn order_by_limit_fills_the_range_slot() {
    let u = use_of(
        "SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 10",
        "public.orders",
    );
    let Advice::Create(p) = advise(&u, &orders(vec![pkey()])) else {
        panic!("expected a proposal")
    };
    assert_eq!(p.columns, v(&["customer_id", "created_at"]));
}

#[test]
fn a_multi_column_index_led_by_the_equality_column_already_serves_it() {
    let u = use_of(
        "SELECT * FROM public.orders WHERE customer_id = $1",
        "public.orders",
    );
    let ix = index(
        "orders_customer_id_created_at_idx",
        &["customer_id", "created_at"],
    );
    assert_eq!(
        advise(&u, &orders(vec![pkey(), ix.clone()])),
        Advice::Covered {
            index: ix.name.clone(),
            definition: ix.definition.clone(),
            columns: v(&["customer_id"]),
        }
    );
}

#[test]
fn equality_columns_in_another_order_are_still_a_covered_prefix() {
    let u = use_of(
        "SELECT * FROM orders WHERE status = $1 AND customer_id = $2",
        "public.orders",
    );
    let ix = index(
        "orders_status_customer_id_idx",
        &["status", "customer_id", "created_at"],
    );
    assert!(matches!(
        advise(&u, &orders(vec![ix])),
        Advice::Covered { .. }
    ));
}

#[test]
fn an_index_not_led_by_the_column_an_invalid_one_or_a_gin_does_not_serve_it() {
    let u = use_of(
        "SELECT * FROM orders WHERE customer_id = $1",
        "public.orders",
    );
    let second = index(
        "orders_created_at_customer_id_idx",
        &["created_at", "customer_id"],
    );
    let mut invalid = index("orders_customer_id_idx", &["customer_id"]);
    invalid.valid = false;
    let mut gin = index("orders_customer_gin", &["customer_id"]);
    gin.method = "gin".into();
    let Advice::Create(p) = advise(&u, &orders(vec![second, invalid, gin])) else {
        panic!("expected a proposal")
    };
    // The invalid index's name is taken: the next free one is used.
    assert_eq!(p.name, "orders_customer_id_idx1");
}

#[test]
fn a_partial_index_counts_only_when_its_predicate_is_trivially_implied() {
    let u = use_of(
        "SELECT * FROM orders WHERE customer_id = $1",
        "public.orders",
    );
    let mut not_null = index("orders_cust_nn", &["customer_id"]);
    not_null.predicate = Some("(customer_id IS NOT NULL)".into());
    assert!(matches!(
        advise(&u, &orders(vec![not_null])),
        Advice::Covered { .. }
    ));
    let mut open_only = index("orders_cust_open", &["customer_id"]);
    open_only.predicate = Some("(status = 'open'::text)".into());
    assert!(matches!(
        advise(&u, &orders(vec![open_only])),
        Advice::Create(_)
    ));
}

#[test]
fn an_expression_predicate_gets_no_plain_column_advice() {
    let u = use_of(
        "SELECT * FROM public.orders WHERE lower(email) = $1",
        "public.orders",
    );
    let Advice::Nothing(why) = advise(&u, &orders(vec![pkey()])) else {
        panic!("expected no advice")
    };
    assert!(why.contains("lower(email)"), "{why}");
}

#[test]
fn a_like_or_an_or_gets_no_advice() {
    let u = use_of("SELECT * FROM orders WHERE email LIKE $1", "public.orders");
    assert!(matches!(advise(&u, &orders(vec![])), Advice::Nothing(w) if w.contains("pattern")));
    let u = use_of(
        "SELECT * FROM orders WHERE customer_id = $1 OR email = $2",
        "public.orders",
    );
    assert!(matches!(advise(&u, &orders(vec![])), Advice::Nothing(_)));
}

#[test]
fn a_column_with_a_handful_of_values_alone_is_not_worth_an_index() {
    let u = use_of("SELECT * FROM orders WHERE status = $1", "public.orders");
    assert!(matches!(advise(&u, &orders(vec![])), Advice::Nothing(w) if w.contains("distinct")));
}

#[test]
fn the_join_column_is_proposed_when_there_is_no_equality() {
    let u = use_of(
        "SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.email = $1",
        "public.orders",
    );
    let Advice::Create(p) = advise(&u, &orders(vec![pkey()])) else {
        panic!("expected a proposal")
    };
    assert_eq!(p.columns, v(&["customer_id"]));
}

#[test]
fn the_name_follows_the_tables_pattern_and_fits_63_bytes() {
    let mut t = orders(vec![pkey(), index("idx_orders_status", &["status"])]);
    assert_eq!(name_pattern(&t), NamePattern::IdxTableCols);
    assert_eq!(
        index_name(&t, &v(&["customer_id"])),
        "idx_orders_customer_id"
    );
    t.indexes = vec![index("ix_orders_status", &["status"])];
    assert_eq!(
        index_name(&t, &v(&["customer_id"])),
        "ix_orders_customer_id"
    );
    t.indexes = vec![pkey()];
    let long = "a_really_long_column_name_that_goes_on_and_on_forever";
    let name = index_name(&t, &v(&[long, "customer_id"]));
    assert!(name.len() <= MAX_NAME_BYTES, "{name}");
    assert!(
        name.starts_with("orders_a_really") && name.ends_with("_idx"),
        "{name}"
    );
}

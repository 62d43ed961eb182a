-- ward's catalog lookup: one round trip that says what every name of one
-- statement resolves to on this server, and everything a view among them
-- reaches, transitively. $1 is a JSON request:
--   {"relations": [{"schema": null|text, "name": text}], "functions": [...],
--    "operators": [...], "types": [...]}
-- Runs read-only, as the target's read role, with search_path pinned to
-- pg_catalog, pg_temp; every comparison is between values of one type, so
-- no operator planted in pg_catalog can be a better match than the
-- built-in one. Objects with oid >= 16384 (FirstNormalObjectId) are not the
-- server's own.
WITH RECURSIVE
req AS (SELECT $1::text::jsonb AS j),
rel_req AS (
  SELECT r."schema", r.name
  FROM req, jsonb_to_recordset(req.j -> 'relations') AS r("schema" text, name text)
),
-- Unqualified relation names: pg_catalog first, then our own pg_temp.
rel_hit AS (
  SELECT DISTINCT ON (q."schema", q.name) q."schema" AS req_schema, q.name AS req_name, c.oid
  FROM rel_req q
  JOIN pg_class c ON c.relname = q.name::name
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE CASE WHEN q."schema" IS NULL
             THEN n.oid = 11::oid OR n.oid = pg_my_temp_schema()
             ELSE n.nspname = q."schema"::name END
  ORDER BY q."schema", q.name, (n.oid = 11::oid) DESC
),
-- Everything reading those relations reaches: what views' rules depend on,
-- inheritance children and partitions.
closure(oid) AS (
  SELECT oid FROM rel_hit
  UNION
  SELECT x.oid
  FROM closure cl
  CROSS JOIN LATERAL (
    SELECT d.refobjid AS oid
    FROM pg_rewrite rw
    JOIN pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid
    WHERE rw.ev_class = cl.oid
      AND d.refclassid = 'pg_catalog.pg_class'::regclass
      AND d.refobjid <> cl.oid
    UNION ALL
    SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = cl.oid
  ) x
),
rule_deps AS (
  SELECT rw.ev_class AS view, d.refclassid, d.refobjid
  FROM closure cl
  JOIN pg_rewrite rw ON rw.ev_class = cl.oid
  JOIN pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid
  WHERE d.refobjid <> rw.ev_class
),
edges AS (
  SELECT view AS "from", refobjid AS "to" FROM rule_deps
  WHERE refclassid = 'pg_catalog.pg_class'::regclass
  UNION
  SELECT i.inhparent, i.inhrelid FROM closure cl JOIN pg_inherits i ON i.inhparent = cl.oid
),
rel_types AS (
  SELECT DISTINCT a.attrelid AS "from", a.atttypid AS "to"
  FROM closure cl JOIN pg_attribute a ON a.attrelid = cl.oid
  WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypid >= 16384::oid
  UNION
  SELECT view, refobjid FROM rule_deps
  WHERE refclassid = 'pg_catalog.pg_type'::regclass AND refobjid >= 16384::oid
),
view_functions AS (
  SELECT DISTINCT view AS "from", refobjid AS "to" FROM rule_deps
  WHERE refclassid = 'pg_catalog.pg_proc'::regclass
),
view_operators AS (
  SELECT DISTINCT view AS "from", refobjid AS "to" FROM rule_deps
  WHERE refclassid = 'pg_catalog.pg_operator'::regclass
),
rel_facts AS (
  SELECT c.oid, n.nspname AS "schema", c.relname AS name, c.relkind::text AS relkind,
         c.relrowsecurity AS rls, c.relhasrules AS rules,
         -- Code the planner and executor run implicitly on a read: a table
         -- access method that is not the server's own, or an index operator
         -- class whose support or operator functions are SQL or procedural
         -- code someone wrote (comparisons and range estimates call them).
         -- C code installed with an extension (pg_trgm, btree_gist) is not
         -- counted: only a superuser can install it.
         (c.relam >= 16384::oid OR EXISTS (
            SELECT 1
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indclass::oid[]) AS oc(oid)
            JOIN pg_opclass opc ON opc.oid = oc.oid
            WHERE i.indrelid = c.oid AND oc.oid >= 16384::oid
              AND (EXISTS (
                     SELECT 1 FROM pg_amproc ap
                     JOIN pg_proc p ON p.oid = ap.amproc
                     JOIN pg_language l ON l.oid = p.prolang
                     WHERE ap.amprocfamily = opc.opcfamily AND p.oid >= 16384::oid
                       AND l.lanname NOT IN ('c', 'internal'))
                   OR EXISTS (
                     SELECT 1 FROM pg_amop ao
                     JOIN pg_operator o ON o.oid = ao.amopopr
                     JOIN pg_proc p ON p.oid = o.oprcode
                     JOIN pg_language l ON l.oid = p.prolang
                     WHERE ao.amopfamily = opc.opcfamily AND p.oid >= 16384::oid
                       AND l.lanname NOT IN ('c', 'internal'))))
         ) AS user_access_code,
         -- A view is deparsed only when nothing it uses has input/output
         -- code of its own (deparsing a constant calls its type's output).
         CASE WHEN c.relkind = 'v' AND NOT EXISTS (
                SELECT 1 FROM rule_deps rd JOIN pg_type t ON t.oid = rd.refobjid
                WHERE rd.view = c.oid AND rd.refclassid = 'pg_catalog.pg_type'::regclass
                  AND t.oid >= 16384::oid AND t.typtype IN ('b', 'r', 'm', 'p'))
              THEN pg_get_viewdef(c.oid) END AS definition
  FROM closure cl
  JOIN pg_class c ON c.oid = cl.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
),
fn_req AS (
  SELECT r."schema", r.name
  FROM req, jsonb_to_recordset(req.j -> 'functions') AS r("schema" text, name text)
),
-- Functions and operators never resolve in pg_temp; unqualified ones in
-- pg_catalog only (search_path is pinned).
fn_hit AS (
  SELECT q."schema" AS req_schema, q.name AS req_name,
         count(*) FILTER (WHERE p.oid < 16384::oid) AS builtin,
         coalesce(array_agg(p.oid::int8) FILTER (WHERE p.oid >= 16384::oid), '{}') AS oids
  FROM fn_req q
  JOIN pg_proc p ON p.proname = q.name::name
  JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = coalesce(q."schema", 'pg_catalog')::name
  GROUP BY q."schema", q.name
),
op_req AS (
  SELECT r."schema", r.name
  FROM req, jsonb_to_recordset(req.j -> 'operators') AS r("schema" text, name text)
),
op_hit AS (
  SELECT q."schema" AS req_schema, q.name AS req_name,
         count(*) FILTER (WHERE o.oid < 16384::oid) AS builtin,
         coalesce(array_agg(o.oid::int8) FILTER (WHERE o.oid >= 16384::oid), '{}') AS oids
  FROM op_req q
  JOIN pg_operator o ON o.oprname = q.name::name
  JOIN pg_namespace n ON n.oid = o.oprnamespace
  WHERE n.nspname = coalesce(q."schema", 'pg_catalog')::name
  GROUP BY q."schema", q.name
),
ty_req AS (
  SELECT r."schema", r.name
  FROM req, jsonb_to_recordset(req.j -> 'types') AS r("schema" text, name text)
),
ty_hit AS (
  SELECT DISTINCT ON (q."schema", q.name) q."schema" AS req_schema, q.name AS req_name, t.oid
  FROM ty_req q
  JOIN pg_type t ON t.typname = q.name::name
  JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE CASE WHEN q."schema" IS NULL
             THEN n.oid = 11::oid OR n.oid = pg_my_temp_schema()
             ELSE n.nspname = q."schema"::name END
  ORDER BY q."schema", q.name, (n.oid = 11::oid) DESC
),
ty_closure(oid) AS (
  SELECT oid FROM ty_hit WHERE oid >= 16384::oid
  UNION SELECT "to" FROM rel_types
  UNION
  SELECT x.oid
  FROM ty_closure tc
  JOIN pg_type t ON t.oid = tc.oid
  CROSS JOIN LATERAL (
    SELECT t.typbasetype AS oid WHERE t.typbasetype <> 0::oid
    UNION ALL SELECT t.typelem WHERE t.typelem <> 0::oid
    UNION ALL SELECT a.atttypid FROM pg_attribute a
      WHERE t.typrelid <> 0::oid AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid
  ) x
  WHERE x.oid >= 16384::oid
),
ty_facts AS (
  SELECT t.oid::int8 AS oid, n.nspname AS "schema", t.typname AS name, t.typtype::text AS typtype,
         (t.typinput::oid < 16384::oid AND t.typoutput::oid < 16384::oid
          AND t.typreceive::oid < 16384::oid AND t.typsend::oid < 16384::oid
          AND t.typmodin::oid < 16384::oid AND t.typmodout::oid < 16384::oid
          AND t.typanalyze::oid < 16384::oid
          -- typsubscript is 14+; read by name so the lookup also runs on 13.
          AND coalesce((to_jsonb(t) ->> 'typsubscript')::regproc::oid < 16384::oid, true)) AS io_builtin,
         EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c') AS has_check,
         coalesce((SELECT r.rngcanonical::oid < 16384::oid AND r.rngsubdiff::oid < 16384::oid
                          AND r.rngsubopc < 16384::oid
                   FROM pg_range r WHERE r.rngtypid = t.oid), true) AS range_builtin,
         array_remove(ARRAY[t.typbasetype::int8, t.typelem::int8], 0::int8)
           || coalesce((SELECT array_agg(a.atttypid::int8) FROM pg_attribute a
                        WHERE t.typrelid <> 0::oid AND a.attrelid = t.typrelid
                          AND a.attnum > 0 AND NOT a.attisdropped), '{}')
           || coalesce((SELECT array_agg(r.rngsubtype::int8) FROM pg_range r WHERE r.rngtypid = t.oid), '{}')
           AS components
  FROM ty_closure tc
  JOIN pg_type t ON t.oid = tc.oid
  JOIN pg_namespace n ON n.oid = t.typnamespace
),
fn_oids AS (
  SELECT unnest(oids) AS oid FROM fn_hit
  UNION SELECT "to"::int8 FROM view_functions
),
fn_facts AS (
  SELECT p.oid::int8 AS oid, n.nspname AS "schema", p.proname AS name,
         p.provolatile::text AS volatility, l.lanname AS language, p.probin,
         p.oid::regprocedure::text AS signature,
         (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
          WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
            AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
          LIMIT 1) AS extension
  FROM fn_oids f
  JOIN pg_proc p ON p.oid = f.oid::oid
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
),
op_oids AS (
  SELECT unnest(oids) AS oid FROM op_hit
  UNION SELECT "to"::int8 FROM view_operators WHERE "to" >= 16384::oid
),
op_facts AS (
  SELECT o.oid::int8 AS oid, n.nspname AS "schema", o.oprname AS name,
         o.oid::regoperator::text AS signature, o.oprcode::oid::regprocedure::text AS function
  FROM op_oids x
  JOIN pg_operator o ON o.oid = x.oid::oid
  JOIN pg_namespace n ON n.oid = o.oprnamespace
)
SELECT jsonb_build_object(
  'rel_hits', coalesce((SELECT jsonb_agg(jsonb_build_object('schema', req_schema, 'name', req_name, 'oid', oid::int8)) FROM rel_hit), '[]'),
  'relations', coalesce((SELECT jsonb_agg(jsonb_build_object('oid', oid::int8, 'schema', "schema", 'name', name,
      'relkind', relkind, 'rls', rls, 'rules', rules, 'user_access_code', user_access_code,
      'definition', definition)) FROM rel_facts), '[]'),
  'edges', coalesce((SELECT jsonb_agg(jsonb_build_object('from', "from"::int8, 'to', "to"::int8)) FROM edges), '[]'),
  'rel_types', coalesce((SELECT jsonb_agg(jsonb_build_object('from', "from"::int8, 'to', "to"::int8)) FROM rel_types), '[]'),
  'view_functions', coalesce((SELECT jsonb_agg(jsonb_build_object('from', "from"::int8, 'to', "to"::int8)) FROM view_functions), '[]'),
  'view_operators', coalesce((SELECT jsonb_agg(jsonb_build_object('from', "from"::int8, 'to', "to"::int8)) FROM view_operators WHERE "to" >= 16384::oid), '[]'),
  'fn_hits', coalesce((SELECT jsonb_agg(jsonb_build_object('schema', req_schema, 'name', req_name, 'builtin', builtin, 'oids', oids)) FROM fn_hit), '[]'),
  'functions', coalesce((SELECT jsonb_agg(to_jsonb(f)) FROM fn_facts f), '[]'),
  'op_hits', coalesce((SELECT jsonb_agg(jsonb_build_object('schema', req_schema, 'name', req_name, 'builtin', builtin, 'oids', oids)) FROM op_hit), '[]'),
  'operators', coalesce((SELECT jsonb_agg(to_jsonb(o)) FROM op_facts o), '[]'),
  'ty_hits', coalesce((SELECT jsonb_agg(jsonb_build_object('schema', req_schema, 'name', req_name, 'oid', oid::int8)) FROM ty_hit), '[]'),
  'types', coalesce((SELECT jsonb_agg(to_jsonb(t)) FROM ty_facts t), '[]'),
  'planted_functions', coalesce((SELECT jsonb_agg(jsonb_build_object(
        'name', p.proname::text, 'language', l.lanname::text, 'probin', p.probin,
        'extension', (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                      WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                        AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
                      LIMIT 1)))
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
      WHERE p.pronamespace = 11::oid AND p.oid >= 16384::oid), '[]'),
  'planted_operators', coalesce((SELECT jsonb_agg(DISTINCT o.oprname::text) FROM pg_operator o
      WHERE o.oprnamespace = 11::oid AND o.oid >= 16384::oid), '[]'),
  'bad_casts', coalesce((SELECT jsonb_agg(format('%s -> %s via %s', c.castsource::regtype, c.casttarget::regtype,
      c.castfunc::regprocedure)) FROM pg_cast c
      WHERE c.oid >= 16384::oid AND c.castsource < 16384::oid AND c.casttarget < 16384::oid
        AND c.castfunc <> 0::oid), '[]')
)::text

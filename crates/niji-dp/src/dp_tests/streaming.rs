//! The streaming bounding (person-contiguous input) against the general plan: the same exact
//! bounded aggregates, the fall-back when the input is not person-contiguous, and persons split
//! over partitions bounded once.

use super::*;
use crate::release::Bounded;

fn assert_same(sql: &str, a: &Bounded, b: &Bounded) {
    let (fa, fb) = (flat(a), flat(b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>(), "{sql}: groups differ");
    for (k, x) in &fa {
        let y = fb[k];
        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{sql}: {k:?} streaming {x} general {y}");
    }
}

/// L large enough that no person has more groups: no random choice, both paths are exact.
fn no_choice() -> DpParams {
    DpParams { max_groups_per_person: Some(1000), ..params(1.0, 1e-6) }
}

const QUERIES: &[&str] = &[
    "SELECT count(*) FROM person",
    "SELECT sex, count(*) AS n FROM person GROUP BY sex",
    "SELECT sex, prefecture_code, count(*) AS n FROM person GROUP BY sex, prefecture_code",
    "SELECT condition_source_value, count(*), count(DISTINCT person_id) FROM condition_occurrence GROUP BY 1",
    "SELECT count(*), sum(value_as_number), avg(value_as_number) FROM measurement",
    "SELECT var_samp(value_as_number), stddev_pop(value_as_number) FROM measurement WHERE value_as_number > 60",
    "SELECT prefecture_code, count(*) FILTER (WHERE total_points > 120), sum(total_points), avg(total_points) \
     FROM claim GROUP BY 1",
    "SELECT count(DISTINCT person_id) FILTER (WHERE value_as_number > 100) FROM measurement",
];

#[tokio::test]
async fn streaming_gives_the_general_plans_exact_aggregates() {
    let ctx = sample(true).sorted().context();
    for sql in QUERIES {
        let p = analyse(&ctx, sql, &no_choice()).await.unwrap();
        let fast = p.bounded(&ctx).await.unwrap();
        assert!(fast.streamed, "{sql}: sorted input did not take the streaming path");
        let general = p.bounded_general(&ctx).await.unwrap();
        assert!(!general.streamed);
        assert_same(sql, &fast, &general);
    }
}

#[tokio::test]
async fn unsorted_input_is_streamed_after_a_sort() {
    // As built, the heavy person's rows come after everyone else's but sort first.
    let ctx = sample(true).context();
    for sql in QUERIES {
        let p = analyse(&ctx, sql, &no_choice()).await.unwrap();
        let b = p.bounded(&ctx).await.unwrap();
        assert!(b.streamed && b.sorted, "{sql}: unsorted input was not sorted before streaming");
        assert_same(sql, &b, &p.bounded_general(&ctx).await.unwrap());
        // The attempt on the input as it comes gives up.
        let spec = p.streaming.as_ref().expect("streaming spec");
        assert!(crate::streaming::bounded(spec, &ctx).await.unwrap().is_none(), "{sql}");
    }
}

/// `table` registered as several partitions, each given as the rows (in order) it holds.
fn partitioned(parts: &[Vec<Row>], table: &TableDef) -> SessionContext {
    let ctx = Data::default().context();
    let schema = table.schema();
    let batches = parts.iter().map(|rows| vec![batch(&schema, rows)]).collect();
    ctx.deregister_table(table.name).unwrap();
    ctx.register_table(table.name, Arc::new(MemTable::try_new(schema, batches).unwrap())).unwrap();
    ctx
}

fn diagnosis(person: &str, code: &str) -> Row {
    vec![("person_id", s(person)), ("condition_source_value", s(code))]
}

/// A person whose rows end one partition and begin the next (as when a sorted file is split
/// into byte ranges) is merged across partitions before bounding: counted once per group, at
/// most L groups, at most C rows per group.
#[tokio::test]
async fn a_person_split_over_partitions_is_bounded_once() {
    let mut first: Vec<Row> = Vec::new();
    let mut second: Vec<Row> = Vec::new();
    for p in 0..10 {
        first.push(diagnosis(&format!("a{p}"), "E11"));
        second.push(diagnosis(&format!("c{p}"), "E11"));
    }
    // Person "b": 30 rows over 6 codes, half at the end of the first partition, half at the
    // start of the second.
    for k in 0..30 {
        let row = diagnosis("b", &format!("X{}", k % 6));
        if k < 15 { first.push(row) } else { second.insert(k - 15, row) }
    }
    let ctx = partitioned(&[first, second], &CONDITION_OCCURRENCE);
    let sql = "SELECT condition_source_value, count(*) AS n, count(DISTINCT person_id) AS p \
               FROM condition_occurrence GROUP BY 1";

    // Without random choice both paths agree exactly: b counts once per code, C = 4 rows each.
    let p = analyse(&ctx, sql, &no_choice()).await.unwrap();
    let fast = p.bounded(&ctx).await.unwrap();
    assert!(fast.streamed, "partitions meeting in one person must stream");
    let general = p.bounded_general(&ctx).await.unwrap();
    assert_same(sql, &fast, &general);
    let by_key = flat(&fast);
    assert_eq!(by_key[&("[Utf8(\"X0\")]".to_owned(), "persons".to_owned())], 1.0);
    assert_eq!(by_key[&("[Utf8(\"X0\")]".to_owned(), "__niji_c0".to_owned())], 4.0);
    assert_eq!(by_key[&("[Utf8(\"E11\")]".to_owned(), "persons".to_owned())], 20.0);

    // With L = 2, b reaches exactly 2 of the 6 codes, whichever they are.
    let two = DpParams { max_groups_per_person: Some(2), ..params(1.0, 1e-6) };
    let p = analyse(&ctx, sql, &two).await.unwrap();
    for _ in 0..20 {
        let b = p.bounded(&ctx).await.unwrap();
        assert!(b.streamed);
        let f = flat(&b);
        let reached: f64 = f.iter().filter(|((k, c), _)| k.contains('X') && c == "persons").map(|(_, v)| v).sum();
        assert_eq!(reached, 2.0);
        let rows: f64 = f.iter().filter(|((k, c), _)| k.contains('X') && c == "__niji_c0").map(|(_, v)| v).sum();
        assert_eq!(rows, 8.0);
    }
}

/// Partitions whose person ranges overlap (two sorted files in one table) cannot be bounded
/// per partition: the row stage is sorted by person first.
#[tokio::test]
async fn overlapping_partitions_fall_back() {
    let mut first: Vec<Row> = Vec::new();
    let mut second: Vec<Row> = Vec::new();
    for p in 0..10 {
        first.push(diagnosis(&format!("p{p}"), "E11"));
        second.push(diagnosis(&format!("p{p}"), "I10"));
    }
    let ctx = partitioned(&[first, second], &CONDITION_OCCURRENCE);
    let sql = "SELECT condition_source_value, count(*) AS n FROM condition_occurrence GROUP BY 1";
    let p = analyse(&ctx, sql, &DpParams { max_groups_per_person: Some(1), ..params(1.0, 1e-6) }).await.unwrap();
    let spec = p.streaming.as_ref().expect("streaming spec");
    assert!(crate::streaming::bounded(spec, &ctx).await.unwrap().is_none(), "overlapping partitions must not stream");
    let b = p.bounded(&ctx).await.unwrap();
    assert!(b.streamed && b.sorted);
    // L = 1: every person reaches one of their two codes.
    let total: i64 = b.persons.iter().sum();
    assert_eq!(total, 10);
}

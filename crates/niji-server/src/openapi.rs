//! The OpenAPI 3.1 document, generated from the route table ([`crate::routes::table`]) that
//! also builds the router, plus hand-written JSON Schemas of the wire types in
//! [`components`]. Served at `GET /openapi.json`.

use serde_json::{Map, Value, json};

use crate::routes::{Access, RouteDoc, routes};

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Invalid request (`invalid_request`, or a query refusal code)",
        401 => {
            "Missing, malformed, unknown (`unauthenticated`), expired (`token_expired`) or revoked (`token_revoked`) token"
        }
        403 => "Wrong role (`forbidden`) or not permitted (`not_a_member`, ...)",
        404 => "Not found",
        406 => "None of the media types in Accept can be produced (`not_acceptable`)",
        409 => "Conflict with the current state",
        413 => "Body larger than 256 KiB (`payload_too_large`)",
        422 => "Well-formed but cannot be processed (`timeout`, `memory_limit`, `quality_failed`)",
        500 => "Internal error (`internal`); the operator's log has the cause",
        501 => "Not available on this server",
        503 => "Busy; try again shortly",
        _ => "See the error code",
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `{name}` segments of a path template.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

fn operation(r: &RouteDoc) -> Value {
    let mut op = Map::new();
    let id = format!("{}{}", r.verb.lower(), r.path.replace(['/', '-', '.'], "_").replace(['{', '}'], ""));
    op.insert("operationId".into(), json!(id));
    op.insert("summary".into(), json!(r.summary));
    op.insert("x-niji-roles".into(), json!(r.access.roles()));
    let public = r.access == Access::Public;
    op.insert("security".into(), if public { json!([]) } else { json!([{ "bearer": [] }]) });

    let mut params = Vec::new();
    for p in path_params(r.path) {
        let ty = if p == "id" { json!({ "type": "integer", "format": "int64" }) } else { json!({ "type": "string" }) };
        params.push(json!({ "name": p, "in": "path", "required": true, "schema": ty }));
    }
    for (name, description) in r.query {
        params.push(json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } }));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = r.request {
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": schema_ref(body) } } }),
        );
    }

    let mut responses = Map::new();
    let mut content = Map::new();
    for media in r.produces {
        let schema = match (r.response, *media) {
            (Some(name), "application/json") => schema_ref(name),
            (_, m) if m.starts_with("text/") => json!({ "type": "string" }),
            (_, m) => json!({ "type": "string", "contentMediaType": m }),
        };
        content.insert((*media).to_owned(), json!({ "schema": schema }));
    }
    responses.insert(r.success.to_string(), json!({ "description": reason(r.success), "content": content }));
    let mut errors: Vec<u16> = r.errors.to_vec();
    if !public {
        errors.extend([401, 403]);
    }
    if !path_params(r.path).is_empty() || r.request.is_some() || !r.query.is_empty() {
        errors.push(400);
    }
    if r.request.is_some() {
        errors.push(413);
    }
    if !public {
        errors.push(500);
    }
    errors.sort_unstable();
    errors.dedup();
    let error_body = json!({ "application/json": { "schema": schema_ref("Error") } });
    for s in errors {
        responses.insert(s.to_string(), json!({ "description": reason(s), "content": error_body }));
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// JSON Schemas of the wire types.
pub fn components() -> Value {
    let num = json!({ "type": "number" });
    let int = json!({ "type": "integer", "format": "int64" });
    let string = json!({ "type": "string" });
    let mode = json!({ "type": "string", "enum": ["dp", "sdc", "extract"] });
    json!({
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "`niji_<64 hex>` token" } },
        "schemas": {
            "Object": { "type": "object" },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": { "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": { "code": string, "message": string }
                } }
            },
            "QueryRequest": {
                "type": "object",
                "required": ["project", "sql"],
                "properties": {
                    "project": { "type": "string", "description": "project id or name" },
                    "sql": { "type": "string", "description": "one SQL query" },
                    "mode": mode,
                    "epsilon": num, "delta": num,
                    "dry_run": { "type": "boolean", "default": false },
                    "max_groups_per_person": { "type": "integer", "description": "dp: groups one person may contribute to" },
                    "max_rows_per_person": { "type": "integer", "description": "dp: rows one person contributes per group" }
                }
            },
            "Column": { "type": "object", "required": ["name", "type"], "properties": { "name": string, "type": string } },
            "Noise": {
                "type": "object",
                "required": ["column", "mechanism", "scale", "ci95"],
                "properties": {
                    "column": string, "mechanism": string, "scale": num, "ci95": num,
                    "statistic": { "type": "string", "description": "count, sum, avg_sum, avg_count, median or partition_selection" },
                    "threshold": { "type": "integer", "description": "partition selection: the noisy person count a group had to reach" }
                }
            },
            "Privacy": {
                "type": "object",
                "required": ["mode", "epsilon_spent", "delta_spent", "budget_remaining", "noise", "cached", "dry_run"],
                "properties": {
                    "mode": mode,
                    "epsilon_spent": num, "delta_spent": num,
                    "budget_remaining": {
                        "type": "object", "required": ["epsilon", "delta"], "properties": { "epsilon": num, "delta": num }
                    },
                    "noise": { "type": "array", "items": schema_ref("Noise") },
                    "cost": {
                        "type": "object", "required": ["epsilon", "delta"], "properties": { "epsilon": num, "delta": num }
                    },
                    "max_groups_per_person": int, "max_rows_per_person": int,
                    "k": int, "rounding": int, "suppressed_rows": int, "row_cap": int,
                    "truncated": { "type": "boolean" }, "cached": { "type": "boolean" }, "dry_run": { "type": "boolean" }
                }
            },
            "QueryResponse": {
                "type": "object",
                "required": ["columns", "rows", "privacy", "dataset_versions", "query_id"],
                "properties": {
                    "columns": { "type": "array", "items": schema_ref("Column") },
                    "rows": { "type": "array", "items": { "type": "array" } },
                    "privacy": schema_ref("Privacy"),
                    "dataset_versions": { "type": "object", "additionalProperties": int },
                    "query_id": string
                }
            },
            "Decision": { "type": "object", "required": ["reason"], "properties": { "reason": string } },
            "CreateProject": {
                "type": "object",
                "required": ["name", "purpose", "datasets", "modes", "epsilon"],
                "properties": {
                    "name": string, "purpose": string,
                    "datasets": { "type": "array", "items": string },
                    "modes": { "type": "array", "items": mode },
                    "epsilon": num, "delta": num,
                    "expires_at": { "type": ["integer", "null"], "description": "unix seconds" }
                }
            },
            "Grant": { "type": "object", "required": ["principal"], "properties": { "principal": { "type": "string", "description": "principal id or name" } } },
            "PipelineRun": {
                "type": "object",
                "required": ["id", "pipeline", "seq", "status", "attempts", "started_at"],
                "properties": {
                    "id": int, "pipeline": string, "seq": int,
                    "status": { "type": "string", "enum": ["open", "failed", "succeeded", "noop"] },
                    "manifest": { "type": "object" }, "attempts": int, "holder": string,
                    "started_at": { "type": "integer", "description": "unix ms" },
                    "finished_at": { "type": ["integer", "null"] },
                    "version_id": { "type": ["integer", "null"] },
                    "summary": { "type": ["object", "null"] },
                    "error": { "type": ["string", "null"] },
                    "resumed": { "type": "boolean", "description": "POST only: this attempt resumed an unfinished run" }
                }
            }
        }
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in routes() {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.verb.lower()] = operation(&r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Niji API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Privacy-preserving secondary use of health data. Errors are `{error: {code, message}}` with a stable code."
        },
        "paths": paths,
        "components": components(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(s)) => out.push(s),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut out = Vec::new();
        refs(&doc, &mut out);
        assert!(out.len() > 20);
        for r in out {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
            assert!(doc["components"]["schemas"].get(name).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn operation_ids_are_unique_and_path_params_declared() {
        let doc = document();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (_, op) in item.as_object().into_iter().flatten() {
                assert!(ids.insert(op["operationId"].as_str().unwrap_or_default().to_owned()), "{path}");
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(declared, path_params(path), "{path}");
            }
        }
    }
}

//! `CatalogService`: tables, and the hierarchical field catalog of each.

use std::sync::Arc;

use portrait_engine::TableSnapshot;
use portrait_proto::v1::{self, catalog_service_server::CatalogService};
use tonic::{Request, Response, Status};

use super::State;
use crate::call::run_blocking;
use crate::convert;
use crate::status::OrStatus;

/// The catalog service over the shared [`State`].
#[derive(Debug, Clone)]
pub struct CatalogApi {
    state: Arc<State>,
}

impl CatalogApi {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// A table's summary.
pub(crate) fn table_message(snap: &TableSnapshot) -> v1::Table {
    v1::Table {
        name: snap.table_name().to_owned(),
        key_kind: convert::key_kind(snap.key_kind()).into(),
        users: snap.users().into(),
        fields: snap.fields().count() as u64,
        created_unix_ms: snap.created_ms(),
    }
}

/// The catalog entry of field `path`.
fn field_message(snap: &TableSnapshot, path: &str) -> Result<v1::Field, Status> {
    // `versions` fails with NOT_FOUND (and a suggestion) for an unknown path.
    let versions = snap.versions(path).or_status()?;
    let meta = snap
        .fields()
        .find(|m| m.spec.path == path)
        .ok_or_else(|| Status::internal(format!("field `{path}` has versions but no entry")))?;
    Ok(convert::field(meta, &versions))
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn list_tables(
        &self,
        request: Request<v1::ListTablesRequest>,
    ) -> Result<Response<v1::ListTablesResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        run_blocking(call, move |_| {
            let mut tables = Vec::new();
            for name in state.db.tables() {
                match state.db.table(&name) {
                    Ok(table) => tables.push(table_message(&table.snapshot())),
                    // Dropped since `tables()` listed it.
                    Err(portrait_engine::Error::TableNotFound(_)) => {}
                    Err(e) => return Err(crate::status::to_status(e)),
                }
            }
            Ok(Response::new(v1::ListTablesResponse { tables }))
        })
        .await
    }

    async fn create_table(
        &self,
        request: Request<v1::CreateTableRequest>,
    ) -> Result<Response<v1::CreateTableResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        let kind = convert::key_kind_from_wire(r.key_kind)?;
        run_blocking(call, move |_| {
            let table = state.db.create_table(&r.name, kind).or_status()?;
            // A new table's dictionary is empty, hence in memory.
            state.set_warm(&r.name, true);
            tracing::info!(table = %r.name, key_kind = kind.name(), "created table");
            Ok(Response::new(v1::CreateTableResponse {
                table: Some(table_message(&table.snapshot())),
            }))
        })
        .await
    }

    async fn drop_table(
        &self,
        request: Request<v1::DropTableRequest>,
    ) -> Result<Response<v1::DropTableResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_blocking(call, move |_| {
            state.db.drop_table(&r.name).or_status()?;
            state.set_warm(&r.name, false);
            tracing::info!(table = %r.name, "dropped table");
            Ok(Response::new(v1::DropTableResponse {}))
        })
        .await
    }

    async fn list_fields(
        &self,
        request: Request<v1::ListFieldsRequest>,
    ) -> Result<Response<v1::ListFieldsResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_blocking(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let mut paths: Vec<&str> = snap
                .fields()
                .map(|m| m.spec.path.as_str())
                .filter(|p| convert::under_prefix(p, &r.prefix))
                .collect();
            paths.sort_unstable();
            let fields = paths
                .into_iter()
                .map(|p| field_message(&snap, p))
                .collect::<Result<_, _>>()?;
            let response = v1::ListFieldsResponse { fields };
            Ok(Response::new(
                state.fits(response, "list a narrower `prefix`")?,
            ))
        })
        .await
    }

    async fn get_field(
        &self,
        request: Request<v1::GetFieldRequest>,
    ) -> Result<Response<v1::GetFieldResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_blocking(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let field = field_message(&snap, &r.path)?;
            Ok(Response::new(v1::GetFieldResponse { field: Some(field) }))
        })
        .await
    }

    async fn tree(
        &self,
        request: Request<v1::TreeRequest>,
    ) -> Result<Response<v1::TreeResponse>, Status> {
        let state = self.state.clone();
        let call = state.call(&request);
        let r = request.into_inner();
        run_blocking(call, move |_| {
            let snap = state.snapshot(&r.table)?;
            let fields = snap.fields().map(|m| (m.spec.path.as_str(), m.spec.kind));
            let root = match convert::tree(fields, &r.prefix) {
                Some(root) => root,
                None if r.prefix.trim_end_matches('/').is_empty() => v1::TreeNode::default(),
                None => {
                    return Err(Status::not_found(format!(
                        "no field of table `{}` lies under `{}`",
                        r.table, r.prefix
                    )));
                }
            };
            let response = v1::TreeResponse { root: Some(root) };
            Ok(Response::new(
                state.fits(response, "ask for a narrower `prefix`")?,
            ))
        })
        .await
    }
}

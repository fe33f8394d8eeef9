//! Builders of `CatalogService` calls: tables and the field catalog.

use portrait_proto::v1::{self, KeyKind};

use super::{missing, request_builder, table, table_setter};
use crate::client::Client;
use crate::error::Result;
use crate::retry::Idempotency;

impl Client {
    /// Lists every table.
    pub fn list_tables(&self) -> ListTables {
        ListTables::new(self, v1::ListTablesRequest {})
    }

    /// Creates an empty table whose user keys are of `key_kind`. Not retried on deadline
    /// expiry (it is not idempotent).
    pub fn create_table(&self, name: impl Into<String>, key_kind: KeyKind) -> CreateTable {
        CreateTable::new(
            self,
            v1::CreateTableRequest {
                name: name.into(),
                key_kind: key_kind as i32,
            },
        )
    }

    /// Drops a table and all its data. Not retried on deadline expiry.
    pub fn drop_table(&self, name: impl Into<String>) -> DropTable {
        DropTable::new(self, v1::DropTableRequest { name: name.into() })
    }

    /// Lists the fields of the table with their metadata; narrow with `.prefix(..)`.
    pub fn list_fields(&self) -> ListFields {
        ListFields::new(
            self,
            v1::ListFieldsRequest {
                table: table(self),
                prefix: String::new(),
            },
        )
    }

    /// The catalog entry of the field at `path`.
    pub fn field(&self, path: impl Into<String>) -> GetField {
        GetField::new(
            self,
            v1::GetFieldRequest {
                table: table(self),
                path: path.into(),
            },
        )
    }

    /// The catalog as a tree of path segments; narrow with `.prefix(..)`.
    pub fn tree(&self) -> Tree {
        Tree::new(
            self,
            v1::TreeRequest {
                table: table(self),
                prefix: String::new(),
            },
        )
    }
}

request_builder!(
    /// Lists tables; resolves to the tables, ordered by name. See [`Client::list_tables`].
    ListTables: v1::ListTablesRequest => Vec<v1::Table>
);

impl ListTables {
    /// Sends the request.
    pub async fn send(self) -> Result<Vec<v1::Table>> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.catalog_stub();
                    async move { stub.list_tables(r).await }
                },
            )
            .await?;
        Ok(response.tables)
    }
}

request_builder!(
    /// Creates a table; resolves to the new table. See [`Client::create_table`].
    CreateTable: v1::CreateTableRequest => v1::Table
);

impl CreateTable {
    /// Sends the request.
    pub async fn send(self) -> Result<v1::Table> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::NonIdempotent,
                |c, r| {
                    let mut stub = c.catalog_stub();
                    async move { stub.create_table(r).await }
                },
            )
            .await?;
        response
            .table
            .ok_or_else(|| missing("CreateTableResponse.table"))
    }
}

request_builder!(
    /// Drops a table. See [`Client::drop_table`].
    DropTable: v1::DropTableRequest => ()
);

impl DropTable {
    /// Sends the request.
    pub async fn send(self) -> Result<()> {
        self.client
            .unary(
                self.message,
                self.timeout,
                Idempotency::NonIdempotent,
                |c, r| {
                    let mut stub = c.catalog_stub();
                    async move { stub.drop_table(r).await }
                },
            )
            .await?;
        Ok(())
    }
}

request_builder!(
    /// Lists fields; resolves to the fields, ordered by path. See [`Client::list_fields`].
    ListFields: v1::ListFieldsRequest => Vec<v1::Field>
);

impl ListFields {
    /// Only fields at or under this path (segment-wise).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.message.prefix = prefix.into();
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<Vec<v1::Field>> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.catalog_stub();
                    async move { stub.list_fields(r).await }
                },
            )
            .await?;
        Ok(response.fields)
    }
}

request_builder!(
    /// Fetches one field's catalog entry. See [`Client::field`].
    GetField: v1::GetFieldRequest => v1::Field
);

impl GetField {
    /// Sends the request.
    pub async fn send(self) -> Result<v1::Field> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.catalog_stub();
                    async move { stub.get_field(r).await }
                },
            )
            .await?;
        response
            .field
            .ok_or_else(|| missing("GetFieldResponse.field"))
    }
}

request_builder!(
    /// Fetches the catalog tree; resolves to its root node. See [`Client::tree`].
    Tree: v1::TreeRequest => v1::TreeNode
);

impl Tree {
    /// Only the subtree at this path.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.message.prefix = prefix.into();
        self
    }

    /// Sends the request.
    pub async fn send(self) -> Result<v1::TreeNode> {
        let response = self
            .client
            .unary(
                self.message,
                self.timeout,
                Idempotency::Idempotent,
                |c, r| {
                    let mut stub = c.catalog_stub();
                    async move { stub.tree(r).await }
                },
            )
            .await?;
        response.root.ok_or_else(|| missing("TreeResponse.root"))
    }
}

table_setter!(ListFields, GetField, Tree);

"""The vector store: Weaviate connection, schema, writes and near-vector queries."""

"""Where documents go: the local NDJSON files (always), later Elasticsearch/OpenSearch."""

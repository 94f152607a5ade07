"""Work spread over processes and machines: Parquet embedding shards, Ray Data encoding, import
and migrate.

Nothing here is imported by the engine; pyarrow and ray load only when these modules are used
(`pip install 'xmodal[ray]'`).
"""

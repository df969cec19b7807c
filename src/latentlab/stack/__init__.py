"""The team stack: PostgreSQL, an S3 object store (SeaweedFS) and an MLflow tracking server.

Every clone of the project can share one stack: DVC's remote `team` is its bucket, so a newcomer
pulls what was already computed, and every stage logs its run to its MLflow server. The services
(`services.TABLE`), started in this order: `db` (PostgreSQL, MLflow's backend store), `s3`
(SeaweedFS's master, volume, filer and S3 gateway in one `weed server`) and `mlflow` (`mlflow
server`, runs in PostgreSQL, artifacts in s3://<bucket>/mlflow, proxied, so clients need no S3
credentials). Everything lives in one folder (default `<repo>/.stack`, git-ignored): data, logs, pid
files and `stack.json` (settings and the generated credentials, readable by its owner only).

Settings, from the environment when `up` starts a stack from nothing (later commands read stack.json):
  LATENTLAB_STACK_DIR      the stack's folder (read by every command: which stack)
  LATENTLAB_STACK_HOST     address MLflow and S3 listen on (default 127.0.0.1; PostgreSQL always loopback)
  LATENTLAB_STACK_PORT     first of ten consecutive ports (default 15000): MLflow, S3, PostgreSQL, then
                           SeaweedFS's master, volume, filer and the gRPC ports of S3, master, volume, filer
  LATENTLAB_STACK_BUCKET   bucket for DVC (`dvc/`) and MLflow (`mlflow/`) (default latentlab)
  LATENTLAB_STACK_DB_USER  OS user running PostgreSQL when we are root (default postgres, else a system
                           user `latentlab` is created): PostgreSQL refuses to run as root
Read whenever they are needed, never kept in stack.json:
  LATENTLAB_STACK_ADDRESS  where clients are told to reach the stack (MLFLOW_TRACKING_URI, DVC's S3
                           endpoint) (default the listen address, or this machine's name for a wildcard)
  LATENTLAB_PG_BIN         folder holding PostgreSQL's pg_ctl and initdb (default the newest
                           /usr/lib/postgresql/*/bin, then PATH)
"""

from . import objectstore, postgres, services, supervisor
from .clone import REMOTE, connect, connect_clone
from .config import PORT_NAMES, Config, default_dir, from_env, load, require
from .lifecycle import describe, down, env_lines, running, status, up
from .objectstore import S3_MIN_FREE_MIB, s3_client
from .services import SERVICES

# What tests/test_team_stack.py reaches into: a spawned service's pid, PostgreSQL's tools and folder,
# whether a port is free.
_pid = supervisor.pid
_port_free = supervisor.port_free
_pg_bin = postgres.pg_bin
_pg_ctl = postgres.pg_ctl
_pg_dir = postgres.pg_dir
_db_running = postgres.running

__all__ = ["Config", "PORT_NAMES", "REMOTE", "S3_MIN_FREE_MIB", "SERVICES", "connect", "connect_clone",
           "default_dir", "describe", "down", "env_lines", "from_env", "load", "objectstore", "postgres", "require",
           "running", "s3_client", "services", "status", "supervisor", "up"]

"""derive batch status from slides; slide claim token and requeue count

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 06:00:00

A batch's status, progress and class totals are computed from its slides on every read
(one aggregate over the (batch_id, status) index), so the cached columns go: a cache
updated by many workers would either drift or make every slide write lock its batch row.
Slides get ``claim_token`` (only the latest claim may write a result, so a redelivered
task never doubles cells) and ``requeues`` (how often the reconciler re-sent it).

SQLite rebuilds ``batches`` to drop columns, and refuses to rename a table under a view
that names it, so the count_report view is dropped around the change and recreated as is.
"""

from alembic import op
import sqlalchemy as sa

from bloodcount.db.types import UTCDateTime


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

COUNT_REPORT = """
CREATE VIEW count_report AS
SELECT
    s.id AS slide_id,
    l.id AS lab_id,
    l.name AS lab,
    b.id AS batch_id,
    b.reference AS reference,
    s.position AS position,
    s.filename AS file,
    s.status AS status,
    s.error AS error,
    s.rbc_count AS rbc_count,
    s.wbc_count AS wbc_count,
    s.platelet_count AS platelet_count,
    s.model_name AS model_name,
    s.model_version AS model_version,
    s.model_sha256 AS model_sha256,
    b.created_at AS submitted_at,
    s.finished_at AS finished_at
FROM slides s
JOIN batches b ON b.id = s.batch_id
JOIN labs l ON l.id = s.lab_id
"""


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS count_report")
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('status')
        batch_op.drop_column('rbc_total')
        batch_op.drop_column('wbc_total')
        batch_op.drop_column('platelet_total')
        batch_op.drop_column('finished_at')
    with op.batch_alter_table('slides', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requeues', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('claim_token', sa.String(length=36), nullable=True))
    op.execute(COUNT_REPORT)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS count_report")
    with op.batch_alter_table('slides', schema=None) as batch_op:
        batch_op.drop_column('claim_token')
        batch_op.drop_column('requeues')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('finished_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('platelet_total', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('wbc_total', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('rbc_total', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('status', sa.String(length=20), server_default='queued', nullable=False))
    op.execute(COUNT_REPORT)

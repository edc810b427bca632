"""slide warnings on slides, last column of count_report

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 05:00:00

Each counted slide records the reasons to look at it before trusting its counts
(bloodcount.slide_warnings: [{"code", "message"}], [] when there are none). Slides counted
before this revision keep NULL: their warnings were never computed. The count_report view
gains the column last, so queries that name columns, or read them by position, see what
they saw before.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# 0003's view text, repeated rather than imported: a revision must read the same whatever
# later revisions do, so each one carries the SQL it creates.
_BEFORE = """
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
    s.finished_at AS finished_at,
    s.rbc_frame_count AS rbc_frame_count,
    s.wbc_frame_count AS wbc_frame_count,
    s.platelet_frame_count AS platelet_frame_count{extra}
FROM slides s
JOIN batches b ON b.id = s.batch_id
JOIN labs l ON l.id = s.lab_id
"""
COUNT_REPORT_0003 = _BEFORE.format(extra="")
COUNT_REPORT = _BEFORE.format(
    extra=""",
    s.warnings AS warnings"""
)


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS count_report")
    with op.batch_alter_table('slides', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=True))
    op.execute(COUNT_REPORT)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS count_report")
    with op.batch_alter_table('slides', schema=None) as batch_op:
        batch_op.drop_column('warnings')
    op.execute(COUNT_REPORT_0003)

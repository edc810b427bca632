"""counting-frame counts on slides and the frame flag on cells

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:15:00

Each slide also records its counts in the unbiased counting frame (cells cut by the right
or bottom image edge left out; see bloodcount.vision.geometry.in_counting_frame), and each
cell whether it is inside that frame. Slides and cells analysed before this revision keep
NULL there: their frame was never computed, and it cannot be from the stored integer boxes
exactly. The count_report view gains the three counts as its last columns, so queries that
name columns, or read them by position, see what they saw before.
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# 0002's view text, repeated rather than imported: a revision must read the same whatever
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
    s.finished_at AS finished_at{extra}
FROM slides s
JOIN batches b ON b.id = s.batch_id
JOIN labs l ON l.id = s.lab_id
"""
COUNT_REPORT_0002 = _BEFORE.format(extra="")
COUNT_REPORT = _BEFORE.format(
    extra=""",
    s.rbc_frame_count AS rbc_frame_count,
    s.wbc_frame_count AS wbc_frame_count,
    s.platelet_frame_count AS platelet_frame_count"""
)


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS count_report")
    with op.batch_alter_table('slides', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rbc_frame_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('wbc_frame_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('platelet_frame_count', sa.Integer(), nullable=True))
    with op.batch_alter_table('cells', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frame', sa.Boolean(), nullable=True))
    op.execute(COUNT_REPORT)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS count_report")
    with op.batch_alter_table('cells', schema=None) as batch_op:
        batch_op.drop_column('frame')
    with op.batch_alter_table('slides', schema=None) as batch_op:
        batch_op.drop_column('platelet_frame_count')
        batch_op.drop_column('wbc_frame_count')
        batch_op.drop_column('rbc_frame_count')
    op.execute(COUNT_REPORT_0002)

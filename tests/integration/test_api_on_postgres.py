"""Unit-tier API tests again, on PostgreSQL: the reports (sums over CASE with NULL frame
counts, the JSON warnings column) and deleting a batch (its slides, analyses and cells go by
the foreign keys' ON DELETE CASCADE) must behave there as on SQLite."""

from __future__ import annotations

import pytest

from tests.servicekit import ApiEnv
from tests.support.stack import fresh_schema

# The same tests as the SQLite unit tier, run against this module's `api_env` fixture.
from tests.unit.test_api_batches import (  # noqa: F401
    test_a_blank_field_is_counted_with_a_warning_in_every_view,
    test_frame_totals_are_null_while_a_finished_slide_lacks_frame_counts,
    test_reports_csv_json_and_counts,
)
from tests.unit.test_api_delete_batch import (  # noqa: F401
    test_delete_removes_the_batch_its_results_and_its_images_and_nothing_else,
    test_images_the_store_fails_to_delete_are_counted_and_swept_later,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def api_env(postgres_url, tmp_path):
    """The unit tier's embedded service, its database a fresh PostgreSQL schema."""
    with fresh_schema(postgres_url) as url:
        env = ApiEnv(tmp_path, database_url=url)
        try:
            yield env
        finally:
            env.close()

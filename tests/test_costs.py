"""docs/costs.md is what bench/costs.py writes, and the model's arithmetic holds up."""

from pathlib import Path

import pytest

from bench import costs

ROOT = Path(__file__).resolve().parent.parent


def test_committed_doc_equals_script_output() -> None:
    assert (ROOT / "docs" / "costs.md").read_text() == costs.render()


def test_check_on_stale_doc_exits_1(tmp_path: Path) -> None:
    stale = tmp_path / "costs.md"
    stale.write_text(costs.render().replace("$", "USD ", 1))

    assert costs.main(["--check", "--doc", str(stale)]) == 1


def test_check_on_fresh_doc_exits_0(tmp_path: Path) -> None:
    fresh = tmp_path / "costs.md"
    fresh.write_text(costs.render())

    assert costs.main(["--check", "--doc", str(fresh)]) == 0


@pytest.mark.parametrize("scenario", costs.SCENARIOS, ids=lambda s: s.key)
def test_scenario_row_total_equals_sum_of_line_items(scenario: costs.Scenario) -> None:
    row = next(
        line for line in costs.render().splitlines() if line.startswith(f"| ({scenario.key}) ")
    )
    cells = [float(cell.strip(" *$").replace(",", "")) for cell in row.split("|")[2:-1]]
    *items, total = cells

    assert len(items) == len(costs.LINE_ITEMS)
    # Each cell is rounded to the cent on its own.
    assert total == pytest.approx(sum(items), abs=0.005 * len(cells))


def test_turning_on_cdn_lowers_transfer_at_this_view_volume() -> None:
    without = costs.monthly(costs.BASELINE).items["transfer"]
    with_cdn = costs.monthly(costs.CDN).items["transfer"]

    assert with_cdn < without


def test_glacier_ir_object_deleted_early_pays_the_days_short_of_90() -> None:
    # 10 GB at $0.004/GB-month deleted after 30 days: 60 days more, two months of it.
    charge = costs.minimum_duration_charge(10, 30, 90, 0.004, 30)

    assert charge == pytest.approx(10 * 0.004 * 2)


def test_glacier_ir_object_deleted_after_90_days_pays_nothing_more() -> None:
    assert costs.minimum_duration_charge(10, 120, 90, 0.004, 30) == 0


def test_cdn_break_even_views_is_where_the_totals_cross() -> None:
    (views,) = costs.cdn_break_even_views()

    def gap(factor: float) -> float:
        a = costs.Assumptions(views_per_month=views * factor)
        return costs.monthly(costs.BASELINE, a).total - costs.monthly(costs.CDN, a).total

    assert (gap(0.99) > 0) != (gap(1.01) > 0)

import csv

import pytest

from tcupgan.tables import write_csv


def test_write_csv_round_trips_and_a_failed_write_keeps_the_old_table(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    write_csv([{"cube": "a", "slice": 3}, {"cube": "b", "slice": 7}], path)
    with open(path, newline="") as f:
        assert list(csv.DictReader(f)) == [{"cube": "a", "slice": "3"}, {"cube": "b", "slice": "7"}]
    before = path.read_text()
    with pytest.raises(ValueError):  # a row with a column the table does not have, after a good row
        write_csv([{"cube": "c", "slice": 1}, {"cube": "d", "slice": 2, "oops": 1}], path)
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]  # no temporary left behind
    write_csv([], path, fields=["cube", "slice"])
    assert path.read_text().strip() == "cube,slice"

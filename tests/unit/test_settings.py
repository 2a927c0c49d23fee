import pytest

from shared.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_are_embedded_and_environment_overrides_them(monkeypatch):
    monkeypatch.delenv("SHOPSENSE_CANDIDATES", raising=False)
    assert Settings().candidates == 100
    monkeypatch.setenv("SHOPSENSE_CANDIDATES", "40")
    monkeypatch.setenv("SHOPSENSE_SEARCH_DEADLINE_S", "0.5")
    settings = Settings()
    assert (settings.candidates, settings.search_deadline_s) == (40, 0.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SHOPSENSE_CANDIDATES", "many", "SHOPSENSE_CANDIDATES: expected an integer, got 'many'"),
        ("SHOPSENSE_SEARCH_DEADLINE_S", "soon", "SHOPSENSE_SEARCH_DEADLINE_S: expected a number"),
    ],
)
def test_a_malformed_variable_is_named_in_the_error(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        Settings()

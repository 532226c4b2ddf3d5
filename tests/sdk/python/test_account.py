"""Account API balance (GET /account/get-balance) through the official Python SDK's Account client."""

import pytest
from vonage_http_client.errors import AuthenticationError

from conftest import account_client


def test_get_balance_returns_the_balance_and_auto_reload_false(account):
    balance = account.account.get_balance()
    assert isinstance(balance.value, float)
    assert balance.auto_reload is False


def test_get_balance_with_a_wrong_secret_is_401():
    with pytest.raises(AuthenticationError):
        account_client(api_secret='wrongsecret1234').account.get_balance()

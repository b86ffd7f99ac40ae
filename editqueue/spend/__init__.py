"""Spend control: vendor prices, what each job cost, tenant budgets and usage reports."""

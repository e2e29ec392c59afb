"""Test doubles and drivers shared by the tests and the benchmarks: fakes of the
Telegram Bot API and the WhatsApp Cloud API, one driver per channel, the survey walker,
and helpers to run the bot as a process."""

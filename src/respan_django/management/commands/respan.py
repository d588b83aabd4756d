"""`python manage.py respan check`: send one test trace to where traces go, and say how it went."""

from django.core.management.base import BaseCommand, CommandError

from respan_core.check import report, send_test_trace

from ...apps import start


class Command(BaseCommand):
    help = "Respan tracing: 'check' sends one test trace to the configured destination."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["check"])

    def handle(self, *args, **options):
        text, status = report(send_test_trace(start()[1]))
        if status:
            raise CommandError(text)
        self.stdout.write(text)

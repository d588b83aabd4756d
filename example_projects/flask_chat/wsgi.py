from chat_app import create_app

app = create_app()

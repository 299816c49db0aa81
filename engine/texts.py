"""The texts Canvass sends on its own, in every language it ships (dsl.vocabulary.BUILTIN_LANGUAGES),
and a survey's own wording of them (its `texts:` setting, in each of its languages).

Keys are dsl.vocabulary.BUILTIN_TEXTS; a text may hold the placeholders listed there, filled
by plain replacement (a `{` elsewhere in an author's text stays as written). "STOP" stays
"STOP" in every language: carriers honour it everywhere, beside each language's own keywords
(engine/sms/keywords.py).
"""

from __future__ import annotations

from types import MappingProxyType

from dsl import ast
from dsl.vocabulary import DEFAULT_LANGUAGE

BUILTIN: dict[str, dict[str, str]] = {
    "en": {
        "not_in_survey": "You are not currently taking a survey.",
        "help": "This is an automated survey. Reply to a question to answer it. Reply STOP to opt out.",
        "resubscribed": "You have been resubscribed. Reply STOP to opt out.",
        "reminder_prefix": "Reminder: ",
        "end": "Thank you for your time. Your response has been recorded.",
        "invalid_nps": "Please reply with a number from 0 to 10.",
        "invalid_choice": "Please reply with one of: {codes}.",
        "invalid_text": "Please reply with some text (up to {max_length} characters).",
        "invalid_number": "Please reply with a number.",
        "invalid_number_range": "Please reply with a number from {min} to {max}.",
        "invalid_number_min": "Please reply with a number of at least {min}.",
        "invalid_number_max": "Please reply with a number up to {max}.",
        "invalid_whole_number": "Please reply with a whole number.",
        "ambiguous": '"{reply}" could mean {choices}. Please reply with the number of one of them.',
        "opt_out_link": "Reply STOP to opt out.",
        "survey_paused": "This survey is paused. Please try again later.",
        "survey_closed": "This survey is closed and no longer accepts answers.",
        "web_next": "OK",
        "web_start": "Start",
        "web_description": "a short survey, one question at a time.",
        "web_max_length": "Up to {max_length} characters.",
        "web_answered": "You have already answered this survey.",
        "web_blank": "Please answer the question before going on.",
        "web_not_found_title": "Survey not found",
        "web_not_found": "This link does not lead to a survey. Check that it was copied whole.",
        "web_paused_title": "Survey paused",
        "web_closed_title": "Survey closed",
        "web_optout_title": "Stop messages",
        "web_optout_question": "Do you want to stop receiving surveys by text message? This number ({number}) will not be sent surveys again.",
        "web_optout_confirm": "Yes, stop messages",
        "web_optout_unknown_title": "Link not found",
        "web_optout_unknown": "This opt-out link is not known. Check that it was copied whole.",
        "web_optout_done_title": "You will get no more messages",
        "web_optout_done": "This number is opted out: no more surveys will be sent to it.",
    },
    "es": {
        "not_in_survey": "En este momento no está respondiendo ninguna encuesta.",
        "help": "Esta es una encuesta automática. Responda a una pregunta para contestarla. "
                "Envíe STOP para darse de baja.",
        "resubscribed": "Se ha vuelto a suscribir. Envíe STOP para darse de baja.",
        "reminder_prefix": "Recordatorio: ",
        "end": "Gracias por su tiempo. Su respuesta ha quedado registrada.",
        "invalid_nps": "Responda con un número del 0 al 10.",
        "invalid_choice": "Responda con una de estas opciones: {codes}.",
        "invalid_text": "Responda con un texto (de hasta {max_length} caracteres).",
        "invalid_number": "Responda con un número.",
        "invalid_number_range": "Responda con un número del {min} al {max}.",
        "invalid_number_min": "Responda con un número igual o mayor que {min}.",
        "invalid_number_max": "Responda con un número igual o menor que {max}.",
        "invalid_whole_number": "Responda con un número entero.",
        "ambiguous": "«{reply}» puede ser {choices}. Responda con el número de una de ellas.",
        "opt_out_link": "Envíe STOP para darse de baja.",
        "survey_paused": "Esta encuesta está en pausa. Inténtelo de nuevo más tarde.",
        "survey_closed": "Esta encuesta está cerrada y ya no acepta respuestas.",
        "web_next": "Aceptar",
        "web_start": "Comenzar",
        "web_description": "una encuesta breve, una pregunta a la vez.",
        "web_max_length": "Hasta {max_length} caracteres.",
        "web_answered": "Ya ha respondido esta encuesta.",
        "web_blank": "Responda la pregunta antes de continuar.",
        "web_not_found_title": "Encuesta no encontrada",
        "web_not_found": "Este enlace no lleva a ninguna encuesta. Compruebe que lo copió completo.",
        "web_paused_title": "Encuesta en pausa",
        "web_closed_title": "Encuesta cerrada",
        "web_optout_title": "Dejar de recibir mensajes",
        "web_optout_question": "¿Quiere dejar de recibir encuestas por mensaje de texto? A este número ({number}) no se le enviarán más encuestas.",
        "web_optout_confirm": "Sí, no enviar más mensajes",
        "web_optout_unknown_title": "Enlace no encontrado",
        "web_optout_unknown": "Este enlace para darse de baja no es válido. Compruebe que lo copió completo.",
        "web_optout_done_title": "No recibirá más mensajes",
        "web_optout_done": "Este número se ha dado de baja: no se le enviarán más encuestas.",
    },
    "fr": {
        "not_in_survey": "Vous ne participez à aucune enquête en ce moment.",
        "help": "Ceci est une enquête automatique. Répondez à une question pour y répondre. "
                "Envoyez STOP pour vous désabonner.",
        "resubscribed": "Vous êtes de nouveau abonné. Envoyez STOP pour vous désabonner.",
        "reminder_prefix": "Rappel : ",
        "end": "Merci pour votre temps. Votre réponse a été enregistrée.",
        "invalid_nps": "Veuillez répondre par un nombre de 0 à 10.",
        "invalid_choice": "Veuillez répondre par l'un de ces choix : {codes}.",
        "invalid_text": "Veuillez répondre par un texte (jusqu'à {max_length} caractères).",
        "invalid_number": "Veuillez répondre par un nombre.",
        "invalid_number_range": "Veuillez répondre par un nombre de {min} à {max}.",
        "invalid_number_min": "Veuillez répondre par un nombre d'au moins {min}.",
        "invalid_number_max": "Veuillez répondre par un nombre d'au plus {max}.",
        "invalid_whole_number": "Veuillez répondre par un nombre entier.",
        "ambiguous": "« {reply} » peut vouloir dire {choices}. Veuillez répondre par le numéro de l'un d'eux.",
        "opt_out_link": "Envoyez STOP pour vous désabonner.",
        "survey_paused": "Cette enquête est en pause. Veuillez réessayer plus tard.",
        "survey_closed": "Cette enquête est close et n'accepte plus de réponses.",
        "web_next": "Valider",
        "web_start": "Commencer",
        "web_description": "un court questionnaire, une question à la fois.",
        "web_max_length": "Jusqu'à {max_length} caractères.",
        "web_answered": "Vous avez déjà répondu à cette enquête.",
        "web_blank": "Veuillez répondre à la question avant de continuer.",
        "web_not_found_title": "Enquête introuvable",
        "web_not_found": "Ce lien ne mène à aucune enquête. Vérifiez qu'il a été copié en entier.",
        "web_paused_title": "Enquête en pause",
        "web_closed_title": "Enquête close",
        "web_optout_title": "Ne plus recevoir de messages",
        "web_optout_question": "Voulez-vous ne plus recevoir d'enquêtes par SMS ? Aucune enquête ne sera plus envoyée à ce numéro ({number}).",
        "web_optout_confirm": "Oui, ne plus m'envoyer de messages",
        "web_optout_unknown_title": "Lien introuvable",
        "web_optout_unknown": "Ce lien de désinscription est inconnu. Vérifiez qu'il a été copié en entier.",
        "web_optout_done_title": "Vous ne recevrez plus de messages",
        "web_optout_done": "Ce numéro est désinscrit : aucune enquête ne lui sera plus envoyée.",
    },
    "pt": {
        "not_in_survey": "No momento você não está respondendo a nenhuma pesquisa.",
        "help": "Esta é uma pesquisa automática. Responda a uma pergunta para respondê-la. "
                "Envie STOP para cancelar.",
        "resubscribed": "Sua inscrição foi reativada. Envie STOP para cancelar.",
        "reminder_prefix": "Lembrete: ",
        "end": "Obrigado pelo seu tempo. Sua resposta foi registrada.",
        "invalid_nps": "Responda com um número de 0 a 10.",
        "invalid_choice": "Responda com uma destas opções: {codes}.",
        "invalid_text": "Responda com um texto (de até {max_length} caracteres).",
        "invalid_number": "Responda com um número.",
        "invalid_number_range": "Responda com um número de {min} a {max}.",
        "invalid_number_min": "Responda com um número de pelo menos {min}.",
        "invalid_number_max": "Responda com um número de no máximo {max}.",
        "invalid_whole_number": "Responda com um número inteiro.",
        "ambiguous": "\"{reply}\" pode ser {choices}. Responda com o número de uma delas.",
        "opt_out_link": "Envie STOP para cancelar.",
        "survey_paused": "Esta pesquisa está pausada. Tente novamente mais tarde.",
        "survey_closed": "Esta pesquisa está encerrada e não aceita mais respostas.",
        "web_next": "OK",
        "web_start": "Começar",
        "web_description": "uma pesquisa curta, uma pergunta de cada vez.",
        "web_max_length": "Até {max_length} caracteres.",
        "web_answered": "Você já respondeu a esta pesquisa.",
        "web_blank": "Responda à pergunta antes de continuar.",
        "web_not_found_title": "Pesquisa não encontrada",
        "web_not_found": "Este link não leva a nenhuma pesquisa. Verifique se foi copiado por inteiro.",
        "web_paused_title": "Pesquisa pausada",
        "web_closed_title": "Pesquisa encerrada",
        "web_optout_title": "Parar mensagens",
        "web_optout_question": "Quer deixar de receber pesquisas por mensagem de texto? Este número ({number}) não receberá mais pesquisas.",
        "web_optout_confirm": "Sim, parar as mensagens",
        "web_optout_unknown_title": "Link não encontrado",
        "web_optout_unknown": "Este link de cancelamento não é conhecido. Verifique se foi copiado por inteiro.",
        "web_optout_done_title": "Você não receberá mais mensagens",
        "web_optout_done": "Este número foi descadastrado: não receberá mais pesquisas.",
    },
    "de": {
        "not_in_survey": "Sie nehmen gerade an keiner Umfrage teil.",
        "help": "Dies ist eine automatische Umfrage. Antworten Sie auf eine Frage, um sie zu beantworten. "
                "Senden Sie STOP zum Abmelden.",
        "resubscribed": "Sie sind wieder angemeldet. Senden Sie STOP zum Abmelden.",
        "reminder_prefix": "Erinnerung: ",
        "end": "Vielen Dank für Ihre Zeit. Ihre Antwort wurde gespeichert.",
        "invalid_nps": "Bitte antworten Sie mit einer Zahl von 0 bis 10.",
        "invalid_choice": "Bitte antworten Sie mit einer dieser Optionen: {codes}.",
        "invalid_text": "Bitte antworten Sie mit einem Text (bis zu {max_length} Zeichen).",
        "invalid_number": "Bitte antworten Sie mit einer Zahl.",
        "invalid_number_range": "Bitte antworten Sie mit einer Zahl von {min} bis {max}.",
        "invalid_number_min": "Bitte antworten Sie mit einer Zahl ab {min}.",
        "invalid_number_max": "Bitte antworten Sie mit einer Zahl bis {max}.",
        "invalid_whole_number": "Bitte antworten Sie mit einer ganzen Zahl.",
        "ambiguous": "„{reply}“ kann {choices} bedeuten. Bitte antworten Sie mit der Nummer einer Option.",
        "opt_out_link": "Senden Sie STOP zum Abmelden.",
        "survey_paused": "Diese Umfrage ist pausiert. Bitte versuchen Sie es später erneut.",
        "survey_closed": "Diese Umfrage ist geschlossen und nimmt keine Antworten mehr an.",
        "web_next": "Weiter",
        "web_start": "Starten",
        "web_description": "Eine kurze Umfrage, eine Frage nach der anderen.",
        "web_max_length": "Bis zu {max_length} Zeichen.",
        "web_answered": "Sie haben diese Umfrage bereits beantwortet.",
        "web_blank": "Bitte beantworten Sie die Frage, bevor Sie fortfahren.",
        "web_not_found_title": "Umfrage nicht gefunden",
        "web_not_found": "Dieser Link führt zu keiner Umfrage. Prüfen Sie, ob er vollständig kopiert wurde.",
        "web_paused_title": "Umfrage pausiert",
        "web_closed_title": "Umfrage geschlossen",
        "web_optout_title": "Keine Nachrichten mehr",
        "web_optout_question": "Möchten Sie keine Umfragen mehr per SMS erhalten? An diese Nummer ({number}) werden keine Umfragen mehr gesendet.",
        "web_optout_confirm": "Ja, keine Nachrichten mehr",
        "web_optout_unknown_title": "Link nicht gefunden",
        "web_optout_unknown": "Dieser Abmeldelink ist nicht bekannt. Prüfen Sie, ob er vollständig kopiert wurde.",
        "web_optout_done_title": "Sie erhalten keine Nachrichten mehr",
        "web_optout_done": "Diese Nummer ist abgemeldet: Es werden ihr keine Umfragen mehr gesendet.",
    },
}

# What a contact's language field may say besides a code: each shipped language's name, in
# English and in itself (accents and case do not count).
LANGUAGE_NAMES = {
    "english": "en", "spanish": "es", "espanol": "es", "castellano": "es", "french": "fr", "francais": "fr",
    "portuguese": "pt", "portugues": "pt", "german": "de", "deutsch": "de",
}

# Languages whose numbers are written with a decimal comma (7,5); a point is read as one too.
DECIMAL_COMMA = frozenset({"es", "fr", "pt", "de"})

Texts = MappingProxyType  # key -> text, one language's


def primary(language: str) -> str:
    """The language without its region: pt-BR -> pt."""
    return language.split("-")[0]


def builtin(language: str | None) -> Texts:
    """The built-in texts of `language` (by its primary subtag), else English's."""
    return _BUILTIN.get(primary(language or DEFAULT_LANGUAGE), _BUILTIN[DEFAULT_LANGUAGE])


_BUILTIN = {language: MappingProxyType(texts) for language, texts in BUILTIN.items()}


def for_survey(survey: ast.Survey, language: str) -> Texts:
    """Every built-in text as `survey` words it in `language`: its `texts` override, else built in."""
    own = {name: survey.texts[name] if language == survey.default_language
           else survey.translations.get(f"texts.{name}", {}).get(language)
           for name in survey.texts}
    return MappingProxyType({**builtin(language), **{k: v for k, v in own.items() if v}})


def fill(text: str, **values: object) -> str:
    """`text` with its {placeholders} replaced (plain replacement: other braces stay as written)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def decimal_comma(language: str | None) -> bool:
    return primary(language or DEFAULT_LANGUAGE) in DECIMAL_COMMA


def format_number(value: int | float, language: str | None) -> str:
    """A number as the language writes it: 7.5 in English, 7,5 in Spanish; 7.0 as 7."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text.replace(".", ",") if decimal_comma(language) else text

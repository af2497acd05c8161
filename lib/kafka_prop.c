/* Which librdkafka properties hold secrets (kinfer/kafka_prop.h): the one
 * rule every error message and log line that names a property follows
 * before it shows a value. */
#include <ctype.h>
#include <stddef.h>

#include "kinfer/kafka_prop.h"

/* Whether name, compared without case, has word (lowercase) at s. */
static int word_at(const char *s, const char *word)
{
    size_t j = 0;
    while (word[j] != '\0' && tolower((unsigned char)s[j]) == word[j])
        j++;
    return word[j] == '\0';
}

static int contains_word(const char *name, const char *word)
{
    for (const char *s = name; *s != '\0'; s++)
        if (word_at(s, word))
            return 1;
    return 0;
}

int kinfer_kafka_prop_is_secret(const char *name)
{
    static const char *const words[] = {"password", "secret", "key", "token"};
    if (name == NULL)
        return 0;
    if (word_at(name, "sasl."))
        return 1;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (contains_word(name, words[i]))
            return 1;
    return 0;
}
